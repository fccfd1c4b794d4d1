"""`n > 1`: one request's samples as sequences of their own that share its prompt's KV.

The first sample runs alone until its prompt is computed; the others join then and find
every full block of the prompt in the prefix cache, so the prompt is computed and held
once whatever n (vLLM's parallel sampling, on the paged cache). Their outputs merge into
one `RequestOutput` whose `outputs[i]` is sample i.
"""

from dataclasses import dataclass, field, replace

from engine.outputs import CompletionOutput, RequestOutput
from engine.sequence import Sequence


def sample_id(request_id: str, index: int) -> str:
    """The engine-internal id of a request's sample `index`."""
    return f"{request_id}#{index}"


@dataclass
class SampleGroup:
    request_id: str
    sample_ids: list[str]
    held: list[Sequence]  # samples waiting for the first one's prompt to be computed
    latest: dict[str, RequestOutput] = field(default_factory=dict)

    def record(self, output: RequestOutput) -> list[Sequence]:
        """Keep a sample's output; returns the held samples to schedule now (the first
        sample's first output means its prompt's blocks are computed and cached)."""
        self.latest[output.request_id] = output
        released, self.held = self.held, []
        return released

    @property
    def finished(self) -> bool:
        return all(
            sample in self.latest and self.latest[sample].finished for sample in self.sample_ids
        )

    def merged(self) -> RequestOutput:
        """The request's output: sample 0's fields, and every sample in `samples`."""
        first = self.latest[self.sample_ids[0]]
        samples = [self._sample(index, sample) for index, sample in enumerate(self.sample_ids)]
        errors = [o.error for o in self.latest.values() if o.error is not None]
        return replace(
            first,
            request_id=self.request_id,
            finished=self.finished,
            error=errors[0] if errors else None,
            samples=samples,
        )

    def _sample(self, index: int, sample: str) -> CompletionOutput:
        output = self.latest.get(sample)
        if output is None:  # not started yet
            return CompletionOutput(index, "", [], None, None, None)
        return replace(output.outputs[0], index=index)
