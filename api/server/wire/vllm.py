"""vLLM's demo `/generate` response: the prompt followed by the generated text."""

from pydantic import BaseModel, Field


class GenerateResponse(BaseModel):
    text: list[str] = Field(description="per sample (n): the prompt, then the generated text")
    finish_reason: str | None = Field(description="stop or length")
