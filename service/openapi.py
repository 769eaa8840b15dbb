"""The OpenAPI 3.1 document served at `/openapi.json`, built from the live settings' limits."""

from __future__ import annotations

from typing import Any

from renderq.colors import NAMED_COLORS
from renderq.errors import ErrorCode
from renderq.fonts import DEFAULT_FONT, FONT_FILES
from renderq.operations import OPERATION_NAMES
from renderq.settings import Settings
from renderq.text_request import DEFAULT_FONT_SIZE
from renderq.vocabulary import (
    ENGINES,
    INPUT_MEDIA_TYPES,
    OUTPUT_FORMATS,
    OUTPUT_MEDIA_TYPES,
    JobStatus,
)

_OPAQUE_NAMES = [name for name, rgba in NAMED_COLORS.items() if rgba[3]]
_COLOR = {
    "type": "string",
    "description": "#rgb, #rrggbb, #rrggbbaa or one of: " + ", ".join(_OPAQUE_NAMES),
    "pattern": "^(#([0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[a-z]+)$",
}
_BACKGROUND = {**_COLOR, "description": f"{_COLOR['description']}, or transparent"}

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                "message": {"type": "string"},
                "field": {"type": ["string", "null"]},
            },
            "required": ["code", "message", "field"],
        }
    },
}

_STATUS = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": [str(s) for s in JobStatus]},
        "ready": {"type": "boolean"},
        "kind": {"type": "string"},
        "engine": {"type": "string", "enum": list(ENGINES)},
        "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "queued_at": {"type": ["string", "null"], "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "attempts": {"type": "integer"},
        "error": {"type": ["object", "null"]},
    },
}


_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key within the TTL returns the same job instead of a new one",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _text_request(settings: Settings) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": settings.max_text_length},
            "engine": {"type": "string", "enum": list(ENGINES), "default": "pillow"},
            "font": {"type": "string", "enum": sorted(FONT_FILES), "default": DEFAULT_FONT},
            "size": {
                "type": "integer",
                "minimum": settings.min_font_size,
                "maximum": settings.max_font_size,
                "default": DEFAULT_FONT_SIZE,
            },
            "color": {**_COLOR, "default": "black"},
            "background": {**_BACKGROUND, "default": "white"},
            "width": {"type": "integer", "minimum": 1, "maximum": settings.max_width},
            "height": {"type": "integer", "minimum": 1, "maximum": settings.max_height},
            "format": {"type": "string", "enum": list(OUTPUT_FORMATS), "default": "png"},
        },
    }


def _image_fields(settings: Settings) -> dict[str, Any]:
    """The image job's fields: multipart form fields, or query parameters with a raw body."""
    return {
        "ops": {
            "type": "string",
            "description": "JSON array of operations, applied in order: "
            + ", ".join(OPERATION_NAMES)
            + " (see the README's op reference)",
        },
        "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "quality": {"type": "integer", "minimum": 1, "maximum": 100},
        "engine": {"type": "string", "enum": list(ENGINES), "default": "pillow"},
        "keep_metadata": {"type": "boolean", "default": False},
    }


def _image_bodies(settings: Settings) -> dict[str, Any]:
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, **_image_fields(settings)},
    }
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "multipart/form-data": {"schema": form},
        **{media: raw for media in INPUT_MEDIA_TYPES.values()},
        "application/octet-stream": raw,
    }


def _image_query(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in _image_fields(settings).items()
    ]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error") for s in statuses}


_HEALTH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"const": "ok"},
        "redis": {"const": "ok"},
        "sandbox": {"enum": ["isolated", "weakened", "no workers"]},
        "sandbox_weakened": {"type": "array", "items": {"type": "string"}},
        "workers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "consumer": {"type": "string"},
                    "sandbox": {
                        "type": "object",
                        "description": "each layer: 'ok', or why it is not in place",
                        "additionalProperties": {"type": "string"},
                    },
                },
            },
        },
    },
}


def _job_id_parameter() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    images = {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in OUTPUT_MEDIA_TYPES.values()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "renderq", "version": "0.1.0"},
        "paths": {
            "/jobs": {
                "post": {
                    "summary": "Queue a text job (JSON) or an image job (multipart or raw image)",
                    "description": "Query parameters apply to a raw image body only.",
                    "parameters": [_IDEMPOTENCY_KEY, *_image_query(settings)],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _text_request(settings)},
                            **_image_bodies(settings),
                        },
                    },
                    "responses": {
                        "202": _json(_STATUS, "queued; Location names the job"),
                        **_errors(400, 413, 415, 422, 503),
                    },
                }
            },
            "/jobs/{job_id}": {
                "delete": {
                    "summary": "Cancel a queued job; a running or ended one answers 409",
                    "parameters": [_job_id_parameter()],
                    "responses": {"200": _json(_STATUS, "cancelled"), **_errors(404, 409, 503)},
                },
                "get": {
                    "summary": "The image when done; 202 while queued or running",
                    "parameters": [
                        _job_id_parameter(),
                        {
                            "name": "wait",
                            "in": "query",
                            "description": "long-poll: seconds to wait for the job to end",
                            "schema": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": settings.max_wait,
                            },
                        },
                    ],
                    "responses": {
                        "200": {"description": "the image", "content": images},
                        "202": _json(_STATUS, "not ready; see Retry-After"),
                        **_errors(404, 410, 422, 500, 503),
                    },
                },
            },
            "/jobs/{job_id}/status": {
                "get": {
                    "summary": "The job's status document",
                    "parameters": [_job_id_parameter()],
                    "responses": {"200": _json(_STATUS, "status"), **_errors(404, 503)},
                }
            },
            "/fonts": {
                "get": {
                    "summary": "Fonts a request may name",
                    "responses": {"200": {"description": "font names"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "200 when Redis is reachable, with every live worker's sandbox",
                    "responses": {"200": _json(_HEALTH, "healthy"), **_errors(503)},
                }
            },
        },
    }
