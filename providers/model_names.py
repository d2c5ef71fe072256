"""The model-string grammar: which model names a caller may send, decided without importing litellm.

A deployed function takes the model from its caller, and LiteLLM reads more than a name from that string: for
some providers a model that starts with ``http://`` *is* the request URL, for others it names a host, loads
weights into the process or starts an OAuth login. So a model string is checked here, by static rules, before
anything else sees it (the CLI refuses a bad one before the ~3 s litellm import; nothing touches the network).

LiteLLM models are ``<provider>/<name>`` (or a bare name LiteLLM's model map knows, e.g. ``gpt-4o-mini``,
whose inferred provider must then be vetted too):

- ``provider`` is one of :data:`LITELLM_PROVIDERS`, the providers whose request host comes from the deployment
  (a fixed vendor URL, ``api_base``, or an environment variable) and never from the model name. Each was
  checked in LiteLLM's source and probed (``tests/security/test_sec_model_grammar.py``). Providers known to take
  a URL or host from the name, or to have other side effects, are in :data:`REFUSED_PROVIDERS` with the
  reason; every other LiteLLM provider is refused as "not vetted" until someone checks it and adds it.
- ``name`` is printable ASCII from a small alphabet (letters, digits, ``. _ - : @ + /``), at most
  :data:`MAX_MODEL_LENGTH` characters, with no scheme (``://``), no ``..``, ``?``, ``#``, ``%``, ``\\``,
  whitespace or control character, no empty path segment, and no host-like first segment
  (``localhost``, an IP address, ``user:pass@``, ``example.com/...``).

Other providers (the mock) name their own models: the name rules apply, without a provider prefix.
"""

from __future__ import annotations

import re
import unicodedata

from providers.errors import InvalidRequestError

__all__ = [
    "MAX_MODEL_LENGTH",
    "KNOWN_LITELLM_PROVIDERS",
    "LITELLM_PROVIDERS",
    "REFUSED_PROVIDERS",
    "check_model_string",
    "check_inferred_provider",
]

MAX_MODEL_LENGTH = 200

#: Every provider prefix LiteLLM 1.110.2 knows (``litellm.provider_list``), kept static so the grammar needs no
#: litellm import; a test keeps it equal to the installed litellm's list.
KNOWN_LITELLM_PROVIDERS: frozenset[str] = frozenset(
    """
    a2a a2a_agent abliteration ai21 ai21_chat aiand aiml aiohttp_openai amazon_nova anthropic anthropic_text
    apertis assemblyai auto_router aws_polly aws_textract azure azure_ai azure_speech azure_text baseten
    bedrock bedrock_mantle bespoke bigmodel black_forest_labs bytez cerebras charity_engine chatgpt chutes
    clarifai clf_ai_gateway cloudflare codestral cognition cohere cohere_chat cometapi compactifai coralbricks
    cortecs cursor custom custom_openai darkbloom dashscope databricks databricks_agent datarobot deepgram
    deepinfra deepseek docker_model_runner dotprompt edenai elevenlabs empiriolabs empower eu_jev fal_ai
    featherless_ai fireworks_ai friendliai galadriel gdc gemini gigachat github github_copilot gradient_ai
    groq helicone heroku hosted_vllm hostinger_router huggingface humanloop hyperbolic inception inferenceapis
    infinity jina_ai kyma lambda_ai langflow langfuse langgraph laya lemonade libertai litellm_agent
    litellm_proxy llamafile lm_studio manus maritalk meta meta_llama microsoft_365_copilot milvus minimax
    mistral modelscope mongodb moonshot morph nace nadir nano-gpt nebius neosantara nlp_cloud novita nscale
    nvidia_nim nvidia_riva oci ollama ollama_chat oobabooga openai openai_like opencode_go openinfer
    openrouter opensearch ovhcloud parallel_ai parasail perplexity petals pg_vector pinstripes poe predibase
    prism publicai qwen_ai_platform qwencloud ragflow recraft reducto refuseless reka replicate runwayml
    s3_vectors sagemaker sagemaker_chat sagemaker_nova sail sambanova sap scaledown scaleway scx-ai snowflake
    soniox stability strands_decider streamlake synthetic tencent tensormesh text-completion-codestral
    text-completion-inception text-completion-openai together_ai topaz transcribe triton typesafe v0 valkey
    vercel_ai_gateway vertex_ai vertex_ai_beta vllm volcengine voyage wally wandb watsonx watsonx_text xai
    xiaomi_mimo xinference zai zerogpu
    """.split()
)

#: LiteLLM providers a model string may name. For each, the request goes to a vendor's fixed URL or to the
#: base the deployment configured (``api_base``, ``<PROVIDER>_API_BASE``); the model name travels in the
#: request body or as one path segment under that host (where ``..``, ``?``, ``#``, ``%`` and ``\\``, refused
#: below, are what could move it elsewhere). Bedrock may take an AWS region from an ARN in the name; LiteLLM
#: validates it against the AWS region pattern, so the host stays ``*.amazonaws.com``.
LITELLM_PROVIDERS: frozenset[str] = frozenset(
    {
        # OpenAI and the big vendors
        "openai", "text-completion-openai", "azure", "azure_ai", "anthropic", "gemini", "vertex_ai", "bedrock",
        "mistral", "codestral", "cohere", "cohere_chat", "groq", "deepseek", "xai", "perplexity",
        # OpenAI-compatible hosted APIs with a fixed base URL
        "openrouter", "together_ai", "fireworks_ai", "deepinfra", "cerebras", "sambanova", "nvidia_nim",
        "ai21_chat", "dashscope", "moonshot", "novita", "nebius", "hyperbolic", "featherless_ai", "lambda_ai",
        "friendliai", "github", "meta_llama", "minimax", "zai", "wandb", "volcengine", "scaleway", "ovhcloud",
        "nscale", "vercel_ai_gateway",
        # servers the deployment points at (api_base / *_API_BASE): local and self-hosted models
        "ollama", "ollama_chat", "lm_studio", "llamafile", "hosted_vllm", "litellm_proxy", "custom_openai",
        "docker_model_runner", "databricks", "watsonx",
    }
)

#: LiteLLM providers refused on purpose, with the reason (read in litellm 1.110.2's source, then probed).
REFUSED_PROVIDERS: dict[str, str] = {
    "oobabooga": "uses a model name that starts with http(s):// as the request URL",
    "huggingface": "uses a model name that starts with http(s):// as the endpoint URL",
    "baseten": "builds the request host from the model id (model-<id>.api.baseten.co)",
    "vllm": "loads the named model into this process (weights fetched from the Hugging Face hub)",
    "petals": "loads the named model into this process (weights fetched from the Hugging Face hub)",
    "github_copilot": "starts an OAuth device-code login against github.com",
    "chatgpt": "starts an OAuth login against auth.openai.com",
    "sagemaker": "queries the cloud metadata service (169.254.169.254) and fetches tokenizers at call time",
    "sagemaker_chat": "queries the cloud metadata service (169.254.169.254) at call time",
    "custom": "hands the call to a process-registered handler that decides the URL itself",
}

_PROVIDER_RE = re.compile(r"[a-z][a-z0-9_\-]*")
_ALLOWED_CHAR = re.compile(r"[A-Za-z0-9._:@+/\-]")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?::\d*)?")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,}(?::\d+)?")


def _refuse(model: str, rule: str, detail: str) -> InvalidRequestError:
    shown = model if len(model) <= 80 else model[:80] + "..."
    return InvalidRequestError(
        f"model {shown!r} refused (rule: {rule}): {detail}. A model is <provider>/<name>, e.g. "
        "'openai/gpt-4o-mini' or 'ollama_chat/qwen2.5:0.5b'; servers are set by the deployment "
        "(api_base, LLM_API_BASE), never in the model"
    )


def _check_characters(model: str) -> None:
    for ch in model:
        if ch.isspace():
            raise _refuse(model, "whitespace", f"whitespace ({ord(ch):#06x}) is not allowed")
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise _refuse(model, "control", f"control or format character U+{ord(ch):04X} is not allowed")
    if "://" in model:
        raise _refuse(model, "scheme", "a URL scheme (://) is not a model name")
    if ".." in model:
        raise _refuse(model, "traversal", "'..' is not allowed")
    for ch, rule in (("?", "query"), ("#", "fragment"), ("\\", "backslash"), ("%", "percent-encoding")):
        if ch in model:
            raise _refuse(model, rule, f"{ch!r} is not allowed")
    for ch in model:
        if not _ALLOWED_CHAR.fullmatch(ch):
            raise _refuse(
                model, "characters", f"character {ch!r} is not allowed (letters, digits and . _ - : @ + / only)"
            )


def _check_name(model: str, name: str) -> None:
    if not name:
        raise _refuse(model, "name", "the model name is empty")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise _refuse(model, "segments", "empty path segment ('/' at an end, or '//')")
    first = name.split("/", 1)[0]
    host_like = (
        first.lower() == "localhost"
        or first.lower().startswith("localhost:")
        or _IPV4.fullmatch(first) is not None
        or re.search(r":[^@]*@", first) is not None  # userinfo user:pass@
        or ("/" in name and _DOMAIN.fullmatch(first) is not None)  # example.com/..., api.host:8080/...
    )
    if host_like:
        raise _refuse(model, "host", f"the name starts with a host ({first!r})")


#: Model strings that passed, per grammar (``litellm`` flag): a call checks its model more than once (the
#: fallback chain, the request, the adapter's front half and the function each do), and the check walks every
#: character. Only passes are kept (a refusal raises, with its message, every time); bounded, never evicted.
_passed: dict[tuple[str, bool], None] = {}
_PASSED_MAX = 1024


def check_model_string(model: object, *, litellm: bool = True) -> str:
    """Return ``model`` if it follows the grammar, else raise :class:`InvalidRequestError` naming the rule.

    ``litellm=True`` requires ``<provider>/<name>`` with a vetted provider; ``litellm=False`` (providers that
    name their own models, e.g. the mock) applies the name rules only."""
    key = (model, bool(litellm)) if type(model) is str else None
    if key is not None and key in _passed:
        return model  # type: ignore[return-value]
    checked = _check_model_string(model, litellm=litellm)
    if key is not None and len(_passed) < _PASSED_MAX:
        _passed[key] = None
    return checked


def _check_model_string(model: object, *, litellm: bool = True) -> str:
    if not isinstance(model, str):
        raise InvalidRequestError(
            f"model must be a string such as 'openai/gpt-4o-mini', got {type(model).__name__} (rule: type)"
        )
    if not model:
        raise _refuse(model, "empty", "the model string is empty")
    if len(model) > MAX_MODEL_LENGTH:
        raise _refuse(model, "length", f"{len(model)} characters, over the {MAX_MODEL_LENGTH} limit")
    _check_characters(model)
    if not litellm:
        _check_name(model, model)
        return model
    provider, sep, name = model.partition("/")
    if not sep:
        # A bare name LiteLLM knows (gpt-4o-mini): LiteLLM infers the provider from its model map at call
        # time, and the provider then refuses any inferred provider that is not vetted (vetted_provider()).
        _check_name(model, model)
        return model
    if not _PROVIDER_RE.fullmatch(provider):
        raise _refuse(model, "provider", f"{provider!r} is not a provider name")
    if provider in REFUSED_PROVIDERS:
        raise _refuse(model, "provider", f"provider '{provider}' is refused: it {REFUSED_PROVIDERS[provider]}")
    if provider not in KNOWN_LITELLM_PROVIDERS:
        raise _refuse(model, "provider", f"unknown provider prefix '{provider}': it is not a LiteLLM provider")
    if provider not in LITELLM_PROVIDERS:
        raise _refuse(
            model,
            "provider",
            f"provider '{provider}' is not vetted: nobody has yet checked that it keeps the request host out of "
            "the model name (the vetted list is LITELLM_PROVIDERS in providers/model_names.py)",
        )
    _check_name(model, name)
    return model


def check_inferred_provider(model: str, provider: str) -> None:
    """For a bare model name: the provider LiteLLM inferred must be vetted too (an unknown name is refused
    here, before LiteLLM's own error, so a bad name never reaches the network)."""
    if not provider:
        raise _refuse(model, "provider", "no provider prefix, and LiteLLM does not know the name: write <provider>/<name>")
    if provider in REFUSED_PROVIDERS:
        raise _refuse(model, "provider", f"it resolves to provider '{provider}', which is refused: it {REFUSED_PROVIDERS[provider]}")
    if provider not in LITELLM_PROVIDERS:
        raise _refuse(model, "provider", f"it resolves to provider '{provider}', which is not vetted")
