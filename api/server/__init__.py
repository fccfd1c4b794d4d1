"""The HTTP server: PagedRAG's own API, plus OpenAI-, Ollama- and vLLM-compatible routes."""
