"""renderq's contract: what the HTTP front and the workers both rely on.

Settings, Redis key names, the job record, request validation and error codes live here so that
`service/` and `worker/` never import each other. Nothing in this package imports Pillow or Wand.
"""
