"""The edge inference server: FastAPI app factory, batching, auth, routes, commands."""
