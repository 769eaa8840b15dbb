"""A live tap: a worker that renders a copy of every new job with the code it runs, keeps its
results apart, and compares them with production's, so a new release (or the other engine)
is tried on real traffic before it takes any.

`python -m worker --tap NAME [--engine pillow|imagemagick]` runs one (`loop`); production's
queue script copies each new job's entry onto the stream of every registered tap (`store`);
each job's comparison is a `record`; `python -m worker.tap report NAME` sums them up and
`python -m worker.tap remove NAME` unregisters the tap and deletes what it stored.
"""
