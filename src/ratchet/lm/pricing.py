"""Token prices for cost estimates: configured overrides, else LiteLLM's price map; the local model is free."""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.config.settings import ModelSettings

__all__ = ["TokenPrices", "token_prices"]


@dataclass(frozen=True)
class TokenPrices:
    """USD per input and per output token."""

    input: float
    output: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.input + tokens_out * self.output


def token_prices(model: ModelSettings) -> TokenPrices | None:
    """Prices for a model section, or None when unknown (cost is then not reported, never guessed)."""
    if model.is_local:
        return TokenPrices(0.0, 0.0)
    if model.input_cost_per_1m_usd is not None and model.output_cost_per_1m_usd is not None:
        return TokenPrices(model.input_cost_per_1m_usd / 1e6, model.output_cost_per_1m_usd / 1e6)
    provider, _, name = model.model.partition("/")
    if not name:
        return None
    from dspy.clients.model_metadata import model_info, rate

    info = model_info(None, name, namespaces=(provider,))
    inp, out = rate(info, "input_cost_per_token"), rate(info, "output_cost_per_token")
    return TokenPrices(inp, out) if inp is not None and out is not None else None
