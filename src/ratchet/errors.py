"""Every error Ratchet raises on purpose.

The hierarchy::

    RatchetError
    ├── ConfigError                 bad or unreadable ratchet.toml / RATCHET_* value
    ├── RegistryError               program registry misuse
    │   ├── DuplicateProgramError       a signature name registered twice
    │   ├── InvalidProgramError         factory/metric/signature does not fit
    │   ├── UnknownProgramError         no program under that signature name
    │   └── VersionError                program versions
    │       ├── UnknownVersionError         no such version of a signature
    │       └── VersionIntegrityError       a version's file does not match its fingerprint
    ├── ModelError                  setting up or calling a language model
    │   ├── ModelNotAvailableError      weights or backend missing
    │   └── OutputParseError            the completion could not be parsed into output fields
    ├── DataError                   unusable examples or data files
    │   ├── InputValidationError        inputs do not match a program's schema
    │   │   ├── InvalidTextError            an input is not valid text (e.g. a lone surrogate)
    │   │   ├── InputTooLongError           the rendered prompt does not fit the model's context
    │   │   ├── FieldTooLongError           an input field is longer than [limits] allows
    │   │   └── CorrectionMismatchError     feedback's correction is not the outputs of the program that served
    │   └── InjectionBlockedError       an input broke a rule of the injection guard in block mode
    ├── ExperimentError             A/B experiments
    │   ├── UnknownExperimentError      no experiment with that id
    │   ├── IllegalTransitionError      e.g. promoting a rolled-back experiment
    │   └── ConcurrentChangeError       someone else changed the experiment first
    ├── LimitError                  a serving limit refused a request (never the arm's failure)
    │   ├── OverloadedError             every LM call slot stayed taken for serve.queue_wait_s
    │   └── RateLimitedError            a client sent more requests than [limits] allows
    ├── DeliveryError               an alert channel could not deliver an alert
    └── BackupError                 a backup cannot be written, or an archive is damaged, unsafe or refused

Command-line commands turn a ``RatchetError`` into a one-line message and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dspy.utils.exceptions import AdapterParseError

__all__ = [
    "BackupError",
    "ConcurrentChangeError",
    "ConfigError",
    "CorrectionMismatchError",
    "DataError",
    "DeliveryError",
    "DuplicateProgramError",
    "ExperimentError",
    "FieldTooLongError",
    "IllegalTransitionError",
    "InjectionBlockedError",
    "InputTooLongError",
    "InputValidationError",
    "InvalidProgramError",
    "InvalidTextError",
    "LimitError",
    "ModelError",
    "ModelNotAvailableError",
    "OutputParseError",
    "OverloadedError",
    "RatchetError",
    "RateLimitedError",
    "RegistryError",
    "UnknownExperimentError",
    "UnknownProgramError",
    "UnknownRequestError",
    "UnknownVersionError",
    "VersionError",
    "VersionIntegrityError",
]


class RatchetError(Exception):
    """Base class of every error Ratchet raises on purpose."""


class ConfigError(RatchetError):
    """A configuration value is missing, malformed or of the wrong type."""


class RegistryError(RatchetError):
    """The program registry was used in a way it cannot honour."""


class DuplicateProgramError(RegistryError):
    """A signature name is already registered by a different factory."""


class InvalidProgramError(RegistryError):
    """A factory, metric or signature does not have the required shape."""


class UnknownProgramError(RegistryError, KeyError):
    """No program is registered under the requested signature name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VersionError(RegistryError):
    """A program version cannot be created, found or loaded."""


class UnknownVersionError(VersionError):
    """No version of that name exists for the signature."""


class VersionIntegrityError(VersionError):
    """A stored version's state does not match the fingerprint recorded when it was saved."""


class ModelError(RatchetError):
    """A language model could not be set up or called."""


class ModelNotAvailableError(ModelError):
    """The model weights or its backend are not installed or readable."""


class OutputParseError(ModelError, AdapterParseError):
    """A completion could not be turned into the signature's output fields.

    It is also a DSPy ``AdapterParseError``, so DSPy's own handling (Evaluate,
    optimizers, fallbacks) treats it exactly like its built-in adapters' errors.
    """


class DataError(RatchetError):
    """Examples or data files cannot be used."""


class InputValidationError(DataError):
    """Inputs do not match the fields and types a program expects."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownRequestError(InputValidationError):
    """Feedback names a request id this service did not issue (forged, mistyped, or a client's own id)."""


class InvalidTextError(InputValidationError):
    """An input field holds text that cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"``)."""


class CorrectionMismatchError(InputValidationError):
    """A feedback correction whose fields are not the outputs of the program that served the request (HTTP 409:
    the request may be well formed, it conflicts with what the request id names)."""


class InputTooLongError(InputValidationError):
    """The prompt a program would send for these inputs has more tokens than the model can take (``limit``:
    its context minus the output budget); ``field`` names the longest input."""

    def __init__(self, message: str, *, field: str | None = None, tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message, field=field)
        self.tokens = tokens
        self.limit = limit


class FieldTooLongError(InputValidationError):
    """An input field (or a feedback correction) has more characters than ``[limits]`` allows: ``length`` of
    ``limit`` (a non-string value is measured by its JSON form)."""

    def __init__(self, field: str, *, length: int, limit: int) -> None:
        super().__init__(f"field '{field}' has {length} characters; at most {limit} are accepted", field=field)
        self.length = length
        self.limit = limit


class InjectionBlockedError(DataError):
    """An input field broke an injection-guard rule (``rule``, the reason code) in block mode: the request was
    refused before any LM call."""

    def __init__(self, rule: str, *, field: str | None = None) -> None:
        super().__init__(f"input refused by the injection guard (rule {rule})")
        self.rule = rule
        self.field = field


class ExperimentError(RatchetError):
    """An A/B experiment cannot be created or changed as asked."""


class UnknownExperimentError(ExperimentError):
    """No experiment has that id."""


class IllegalTransitionError(ExperimentError):
    """The experiment's state does not allow that change (nothing was changed)."""


class ConcurrentChangeError(ExperimentError):
    """The experiment changed between reading and writing it (another monitor or operator acted first)."""


class LimitError(RatchetError):
    """A serving limit refused a request before the program ran; ``retry_after_s`` says when to try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OverloadedError(LimitError):
    """Every slot for LM calls (``serve.max_concurrent_calls``) stayed taken for ``serve.queue_wait_s``."""


class RateLimitedError(LimitError):
    """A client (an API key, or an address without keys) sent more requests than ``[limits]`` allows."""


class DeliveryError(RatchetError):
    """An alert channel (Slack, e-mail, webhook) could not deliver an alert; the message never holds a secret."""


class BackupError(RatchetError):
    """A backup cannot be written, or a restore refuses an archive (damaged, unsafe member, non-empty target)."""
