"""The only code that speaks HTTP to the endpoint: chat requests, SSE parsing, reasoning split."""
