"""The advisor's settings: the model server asked at gates, and how long it may take."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class LlmSettings(BaseModel):
    """The advisor: an OpenAI-compatible server (LocalAI, Ollama, llama.cpp) asked at gates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["off", "advisory", "gating"] = Field(
        default="off",
        description="off; advisory (the statistics decide at once; the opinion is asked "
        "afterwards and recorded when it arrives); gating (advice may hold a stage "
        "or turn an advance into a pause awaiting approval, never anything bolder).",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8080/v1", description="Base URL up to /v1 (LLM_BASE_URL)."
    )
    model: str = Field(default="smollm2-135m-instruct", description="Model name to ask for.")
    api_key: SecretStr | None = Field(default=None, description="Bearer token, if required.")
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Per attempt: connect, request and every byte of the reply. The bundled "
        "SmolLM2-135M on llama.cpp takes 7-15 s for one advice on 2 busy CPU cores, so "
        "the default leaves twice the slowest seen; consultations run in the background, so "
        "a slow model delays no gate.",
    )
    retries: int = Field(default=1, ge=0, le=3, description="Retries after a failed attempt.")
    budget_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Deadline of one consultation, retries included; past it the advisor "
        "counts as unavailable. Unset: timeout_seconds * (retries + 1).",
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=16, le=2000)
    response_format: Literal["auto", "json_schema", "json_object", "grammar"] = Field(
        default="auto",
        description="How the reply is constrained: auto (OpenAI json_schema, and where the "
        "server refuses it naming the format, llama-cpp-python's json_object with a schema; "
        "what worked is remembered per server), or one of json_schema, json_object and "
        "LocalAI's grammar.",
    )
    breaker_failures: int = Field(default=3, ge=1, description="Failures that open the circuit.")
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="How long an open circuit fails fast."
    )
    hold_seconds: float = Field(
        default=60.0, gt=0, description="After a hold, how long before the advisor is asked again."
    )

    def budget(self) -> float:
        """Seconds one consultation may take in all: ``budget_seconds`` or every attempt's."""
        if self.budget_seconds is not None:
            return self.budget_seconds
        return self.timeout_seconds * (self.retries + 1)
