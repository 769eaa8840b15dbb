"""The HTTP front: validates render requests, queues them and serves results. Never renders."""
