"""What leaves the server, as typed models: one module per API (native, OpenAI, Ollama,
vLLM) plus the error bodies. Routes declare them (`response_model=`, `responses=`), so
`/openapi.json` describes what clients get; library results convert to them here only."""
