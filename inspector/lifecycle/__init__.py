"""The models the server runs and their life cycle, without HTTP: the registry of loaded
packages and their micro-batchers, deploys (active and shadow), package uploads and archive
checks, shadow runs and their reports. inspector.server exposes these over HTTP."""
