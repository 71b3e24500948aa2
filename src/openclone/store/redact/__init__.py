"""PII redaction: typed placeholders (``[EMAIL]``, ``[CARD]``, …) and a count of what went.

=============  ===============================================================
``base``       ``RedactionResult``, the ``Redactor`` contract, ``Detector``
``detectors``  ``DEFAULT_DETECTORS``, in order of precedence (the order and what
               each one takes or leaves is documented there)
``checks``     the checks that accept or turn away a detector's candidates
``redactor``   ``RegexRedactor`` and :func:`redact`, the default redactor
``plugins``    :func:`load_redactor`: the default, or ``module:attr`` of your own
``messages``   :func:`redact_messages`: the walk over OpenAI chat messages
=============  ===============================================================

What this misses is in the README ("Redaction: known limitations"); a stronger detector
(Presidio, an NER model) plugs in through :func:`load_redactor` as ``module:attr``.
"""

from openclone.store.redact.base import Detector, RedactionResult, Redactor
from openclone.store.redact.detectors import DEFAULT_DETECTORS
from openclone.store.redact.messages import redact_messages
from openclone.store.redact.plugins import load_redactor
from openclone.store.redact.redactor import RegexRedactor, redact

__all__ = [
    "DEFAULT_DETECTORS",
    "Detector",
    "RedactionResult",
    "Redactor",
    "RegexRedactor",
    "load_redactor",
    "redact",
    "redact_messages",
]
