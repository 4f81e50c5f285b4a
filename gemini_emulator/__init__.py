"""A local HTTP emulator of the Gemini File + Batch API that the unmodified google-genai SDK
talks to, with a scriptable "model" and fault injection (see :mod:`gemini_emulator.policy`).

Public API::

    from gemini_emulator import Emulator, Policy
    with Emulator({"records": [{"match": "*:Poison:*", "outcome": "invalid_json"}]}) as emu:
        client = genai.Client(api_key="k", http_options=HttpOptions(base_url=emu.url))
"""

from gemini_emulator.policy import Policy, PolicySpec
from gemini_emulator.server import Emulator, spawn
from gemini_emulator.service import Billed, Service

__all__ = ["Billed", "Emulator", "Policy", "PolicySpec", "Service", "spawn"]
