"""Offline validation of Kubernetes manifests with the `kubernetes` client's models.

A manifest is deserialised into the model of its kind and serialised back: a missing required
field or a wrong type raises, and a misspelt key (silently dropped by the model) shows up as a
difference from the input."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient


def validate(obj: Any, model: str) -> Any:
    api = ApiClient()
    parsed = api.deserialize(json.dumps(obj), model, "application/json")
    back = api.sanitize_for_serialization(parsed)
    assert back == obj, (
        f"{model}: keys lost or changed: {json.dumps(back, sort_keys=True)} != {json.dumps(obj, sort_keys=True)}"
    )
    return parsed
