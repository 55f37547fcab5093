"""HTTP API conventions that hold for every route: the OpenAPI document's error
responses and security schemes, 405/OPTIONS answers, and cache headers.

Each is derived from the routes and their dependencies, so a new route gets them
without being listed anywhere.
"""
