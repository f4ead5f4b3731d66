"""Live delivery: the websocket endpoints, each socket's state, and the uvicorn transport that writes frames."""
