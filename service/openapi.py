"""The OpenAPI 3.1 document served at `/openapi.json`, built from the live settings' limits."""

from __future__ import annotations

from typing import Any

from renderq.errors import ErrorCode
from renderq.fields import object_schema
from renderq.font_coverage import SCRIPT_SAMPLES
from renderq.fonts import ALL_FONTS, DEFAULT_FONT, FONT_FILES
from renderq.image_request import IMAGE_FIELDS
from renderq.jobs import JOB_ID_PATTERN
from renderq.settings import Settings
from renderq.text_request import TEXT_FIELDS
from renderq.vocabulary import (
    ENGINES,
    INPUT_MEDIA_TYPES,
    OUTPUT_FORMATS,
    OUTPUT_MEDIA_TYPES,
    JobKind,
    JobStatus,
)
from service.headers import IDEMPOTENCY_KEY_PATTERN

_ERROR: dict[str, Any] = {
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
    "required": ["error"],
}

_STATUS = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": f"^{JOB_ID_PATTERN}$"},
        "status": {"type": "string", "enum": [str(s) for s in JobStatus]},
        "ready": {"type": "boolean"},
        "kind": {"type": "string", "enum": [str(k) for k in JobKind]},
        "engine": {"type": "string", "enum": list(ENGINES)},
        "format": {"type": "string", "enum": list(OUTPUT_FORMATS)},
        "queued_at": {"type": ["string", "null"], "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "attempts": {"type": "integer", "minimum": 0},
        "error": {
            "type": ["object", "null"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "result_url": {
            "type": "string",
            "description": "a done job's signed link to its image, opened without a key",
        },
    },
    "required": ["id", "status", "ready", "kind", "engine", "format", "attempts", "error"],
}

_CANCELLED = {
    "type": "object",
    "properties": {**_ERROR["properties"], "job": _STATUS},
    "required": ["error", "job"],
}

_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the same key within the TTL returns the same job instead of a new one",
    "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
}


_PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": (
        "RFC 7240 `wait=N`: answer with the result itself (200 and the image, or the job's "
        "error) if the job ends within N seconds (at most RENDERQ_MAX_WAIT), else the usual "
        "202; other preferences are ignored"
    ),
    "schema": {"type": "string", "pattern": "^wait=[0-9]{1,9}$"},
}

_IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "description": "the result's ETag: 304 while the copy the client holds is current",
    "schema": {"type": "string"},
}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


# A result never changes once rendered.
_RESULT_HEADERS = {
    "ETag": _header("strong validator of the result"),
    "Cache-Control": _header("private, max-age=<seconds until the result expires>, immutable"),
}
# What a POST answered after waiting (`Prefer: wait`) adds.
_WAITED_HEADERS = {
    "Content-Location": _header("/jobs/<id>: where the job and its result stay"),
    "Preference-Applied": _header("wait=N, the seconds waited for at most"),
}


def _image_bodies(settings: Settings) -> dict[str, Any]:
    """An image job: a multipart form, or the image itself with its fields in the query."""
    fields = object_schema(IMAGE_FIELDS, settings)
    fields["properties"] = {
        name: _as_form_field(schema) for name, schema in fields["properties"].items()
    }
    form = {
        **fields,
        "required": ["file", *fields["required"]],
        "properties": {"file": {"type": "string", "format": "binary"}, **fields["properties"]},
    }
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "multipart/form-data": {"schema": form},
        **{media: raw for media in INPUT_MEDIA_TYPES.values()},
        "application/octet-stream": raw,
    }


def _as_form_field(schema: dict[str, Any]) -> dict[str, Any]:
    """A field sent as text: `ops` is a JSON array in a string, the others keep their type."""
    if schema.get("type") != "array":
        return schema
    return {
        "type": "string",
        "description": schema.get("description", ""),
        "contentMediaType": "application/json",
        "contentSchema": {key: value for key, value in schema.items() if key != "description"},
    }


def _image_query(settings: Settings) -> list[dict[str, Any]]:
    properties = object_schema(IMAGE_FIELDS, settings)["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": "with an image body only; a text job takes no query parameter",
            "schema": _as_form_field(schema),
        }
        for name, schema in properties.items()
    ]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error") for s in statuses}


# What a client does next with the job a POST made.
_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in (
        ("GetJob", "getJob"),
        ("GetJobStatus", "getJobStatus"),
        ("CancelJob", "cancelJob"),
    )
}

_FONTS = {
    "type": "object",
    "properties": {
        "default": {"const": DEFAULT_FONT},
        "fonts": {"type": "array", "items": {"enum": sorted(FONT_FILES)}},
        "fallback": {"type": "array", "items": {"enum": sorted(ALL_FONTS)}},
        "families": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"enum": sorted(ALL_FONTS)},
                    "file": {"type": "string"},
                    "scripts": {"type": "array", "items": {"enum": sorted(SCRIPT_SAMPLES)}},
                    "requestable": {"type": "boolean"},
                },
                "required": ["name", "file", "scripts", "requestable"],
            },
        },
    },
    "required": ["default", "fonts", "fallback", "families"],
}

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


def _link_ttl(settings: Settings) -> dict[str, Any]:
    return {
        "name": "link_ttl",
        "in": "query",
        "required": False,
        "description": "seconds the `result_url` of a done job lasts (never beyond the result)",
        "schema": {"type": "integer", "minimum": 1, "maximum": settings.result_link_ttl},
    }


# With RENDERQ_AUTH=required (see README, "Tenants and keys").
_API_KEY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "an API key made by `python -m service.keys create NAME`",
}
_RATE_HEADERS = {
    "RateLimit-Policy": _header('the key\'s rate: "submit";q=<burst>;w=<seconds to refill>'),
    "RateLimit": _header('"submit";r=<submissions left now>;t=<seconds until full>'),
}


def _signed_link_parameters() -> list[dict[str, Any]]:
    return [
        _job_id_parameter(),
        {
            "name": "expires",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
        },
        {
            "name": "sig",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
        _IF_NONE_MATCH,
    ]


def _results(images: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "operationId": "getResult",
            "summary": "A done job's image through its signed `result_url`, without a key",
            "security": [],
            "parameters": _signed_link_parameters(),
            "responses": {
                "200": {"description": "the image", "content": images, "headers": _RESULT_HEADERS},
                "304": {"description": "If-None-Match names the result"},
                **_errors(403, 404, 503),
            },
        }
    }


def _job_id_parameter() -> dict[str, Any]:
    return {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{JOB_ID_PATTERN}$"},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    images = {
        media: {"schema": {"type": "string", "format": "binary"}}
        for media in OUTPUT_MEDIA_TYPES.values()
    }
    keyed: dict[str, Any] = {"security": [{"apiKey": []}]} if settings.auth_required else {}
    return {
        "openapi": "3.1.0",
        "info": {"title": "renderq", "version": "0.1.0"},
        "components": {"securitySchemes": {"apiKey": _API_KEY_SCHEME}},
        **keyed,
        "paths": {
            "/jobs": {
                "post": {
                    "operationId": "createJob",
                    "summary": "Queue a text job (JSON) or an image job (multipart or raw image)",
                    "description": "Query parameters apply to a raw image body only.",
                    "parameters": [_IDEMPOTENCY_KEY, _PREFER, *_image_query(settings)],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": object_schema(TEXT_FIELDS, settings)},
                            **_image_bodies(settings),
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "with `Prefer: wait`: the job ended in time",
                            "content": images,
                            "headers": {**_WAITED_HEADERS, **_RESULT_HEADERS},
                        },
                        "202": {
                            **_json(_STATUS, "queued; Location names the job"),
                            "links": _JOB_LINKS,
                            "headers": _RATE_HEADERS,
                        },
                        **_errors(400, 401, 410, 413, 415, 422, 500, 503),
                        "429": {
                            **_json(_ERROR, "past the key's rate or its cap of waiting jobs"),
                            "headers": _RATE_HEADERS,
                        },
                    },
                }
            },
            "/jobs/{job_id}": {
                "delete": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a queued job; a running or ended one answers 409",
                    "parameters": [_job_id_parameter()],
                    "responses": {
                        "200": _json(_STATUS, "cancelled"),
                        **_errors(401, 404, 409, 503),
                    },
                },
                "get": {
                    "operationId": "getJob",
                    "summary": "The image when done; 202 while queued or running",
                    "parameters": [
                        _job_id_parameter(),
                        _IF_NONE_MATCH,
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
                        "200": {
                            "description": "the image",
                            "content": images,
                            "headers": _RESULT_HEADERS,
                        },
                        "202": _json(_STATUS, "not ready; see Retry-After"),
                        "304": {
                            "description": "If-None-Match names the result",
                            "headers": _RESULT_HEADERS,
                        },
                        **_errors(401, 404, 422, 500, 503),
                        "410": _json(_CANCELLED, "cancelled: the error and the status document"),
                    },
                },
            },
            "/jobs/{job_id}/status": {
                "get": {
                    "operationId": "getJobStatus",
                    "summary": "The job's status document",
                    "parameters": [_job_id_parameter(), _link_ttl(settings)],
                    "responses": {
                        "200": _json(_STATUS, "status"),
                        **_errors(401, 404, 422, 503),
                        "410": _json(_CANCELLED, "cancelled: the error and the status document"),
                    },
                }
            },
            "/results/{job_id}": _results(images),
            "/fonts": {
                "get": {
                    "operationId": "listFonts",
                    "summary": "Fonts a request may name",
                    "responses": {"200": _json(_FONTS, "font names")},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "200 when Redis is reachable, with every live worker's sandbox",
                    "security": [],
                    "responses": {"200": _json(_HEALTH, "healthy"), **_errors(503)},
                }
            },
        },
    }
