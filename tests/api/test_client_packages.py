"""The integrations people already use, unchanged, against a live server: LangChain's
OpenAI and Ollama packages and LlamaIndex's Ollama LLM (it reads /api/show first)."""

import pytest
from langchain_core.messages import HumanMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from llama_index.core.llms import ChatMessage
from llama_index.llms.ollama import Ollama

from tests.api.conftest import TEST_MODEL

pytestmark = pytest.mark.slow
EMBEDDER = "all-minilm-l6-v2"
QUESTION = "How does PagedRAG share KV cache blocks between prompts?"


def test_langchain_openai_chat_streams_and_answers_over_the_documents(live_server) -> None:
    url = f"{live_server.url}/v1"
    chat = ChatOpenAI(model=TEST_MODEL, base_url=url, api_key="unused", max_tokens=6, temperature=0)
    whole = chat.invoke([HumanMessage("Say hello to Ada.")])
    streamed = "".join(str(chunk.content) for chunk in chat.stream("Say hello to Ada."))
    assert whole.content and streamed == whole.content
    rag = ChatOpenAI(model="pagedrag-rag", base_url=url, api_key="unused", max_tokens=8)
    assert rag.invoke(QUESTION).content


def test_langchain_openai_embeddings_of_text(live_server) -> None:
    """By default LangChain counts tokens with tiktoken (downloaded at first use, so not
    here) and sends token ids, which the server refuses saying to pass this flag
    (tests/api/test_server_clients.py sends such ids)."""
    embeddings = OpenAIEmbeddings(
        model=EMBEDDER,
        base_url=f"{live_server.url}/v1",
        api_key="unused",
        check_embedding_ctx_length=False,
    )
    assert len(embeddings.embed_documents(["paged attention", "KV cache"])[1]) == 384


def test_langchain_ollama_chat_llm_and_embeddings(live_server) -> None:
    chat = ChatOllama(model=TEST_MODEL, base_url=live_server.url, num_predict=6, temperature=0)
    assert chat.invoke("Say hello to Ada.").content
    llm = OllamaLLM(model=TEST_MODEL, base_url=live_server.url, num_predict=6, temperature=0)
    assert "".join(llm.stream("The capital of France is"))
    vectors = OllamaEmbeddings(model=EMBEDDER, base_url=live_server.url).embed_documents(["a"])
    assert len(vectors[0]) == 384


def test_llama_index_ollama_reads_the_context_length_and_chats(live_server) -> None:
    llm = Ollama(
        model=TEST_MODEL, base_url=live_server.url, request_timeout=120, temperature=0,
        additional_kwargs={"num_predict": 6},
    )  # fmt: skip
    assert llm.metadata.context_window == 4096  # from /api/show's model_info
    assert llm.complete("The capital of France is").text
    assert llm.chat([ChatMessage(role="user", content="Say hello to Ada.")]).message.content
    assert "".join(r.delta or "" for r in llm.stream_complete("Once upon a time"))
