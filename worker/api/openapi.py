"""The OpenAPI document served at ``/openapi.json``.

It is the platform's own document for ``/v1/callbacks*`` (its paths and the components
they use, copied as published), not one generated from the routes: SDKs are generated
from that document, so serving it verbatim is how the contract stays exact.
``tests/unit/api/test_openapi.py`` checks it against the published excerpt.
"""

from __future__ import annotations

from typing import Any

PATHS: dict[str, Any] = {
    "/v1/callbacks": {
        "get": {
            "summary": "List scheduled callbacks",
            "operationId": "listScheduledCallbacks",
            "tags": ["Telephony"],
            "parameters": [
                {
                    "in": "query",
                    "name": "status",
                    "required": False,
                    "schema": {"$ref": "#/components/schemas/ScheduledCallbackStatus"},
                },
                {
                    "in": "query",
                    "name": "source_session_id",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "in": "query",
                    "name": "limit",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
                },
            ],
            "responses": {
                "200": {
                    "description": "Scheduled callbacks",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ScheduledCallbacksResponse"}
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
            },
        }
    },
    "/v1/callbacks/{id}": {
        "get": {
            "summary": "Get scheduled callback",
            "operationId": "getScheduledCallback",
            "tags": ["Telephony"],
            "parameters": [{"$ref": "#/components/parameters/Id"}],
            "responses": {
                "200": {
                    "description": "Scheduled callback",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ScheduledCallback"}
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
            },
        }
    },
    "/v1/callbacks/{id}/cancel": {
        "post": {
            "summary": "Cancel scheduled callback",
            "operationId": "cancelScheduledCallback",
            "tags": ["Telephony"],
            "parameters": [{"$ref": "#/components/parameters/Id"}],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"reason": {"type": "string", "maxLength": 500}},
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Scheduled callback",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ScheduledCallback"}
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
            },
        }
    },
    "/v1/callbacks/{id}/dispatch": {
        "post": {
            "summary": "Dispatch scheduled callback now",
            "operationId": "dispatchScheduledCallback",
            "tags": ["Telephony"],
            "parameters": [{"$ref": "#/components/parameters/Id"}],
            "responses": {
                "200": {
                    "description": "Scheduled callback",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ScheduledCallback"}
                        }
                    },
                },
                "401": {"$ref": "#/components/responses/Unauthorized"},
            },
        }
    },
}

COMPONENTS: dict[str, Any] = {
    "schemas": {
        "ScheduledCallbacksResponse": {
            "type": "object",
            "required": ["callbacks"],
            "properties": {
                "callbacks": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/ScheduledCallback"},
                }
            },
        },
        "ScheduledCallback": {
            "type": "object",
            "required": [
                "id",
                "organization_id",
                "to_number",
                "scheduled_at",
                "status",
                "pipeline_config",
                "metadata",
                "created_at",
                "updated_at",
            ],
            "properties": {
                "id": {"type": "string"},
                "organization_id": {"type": "string"},
                "source_session_id": {"type": "string", "nullable": True},
                "created_session_id": {"type": "string", "nullable": True},
                "agent_id": {"type": "string", "nullable": True},
                "phone_number_id": {"type": "string", "nullable": True},
                "to_number": {"$ref": "#/components/schemas/E164"},
                "from_number": {"type": "string", "nullable": True},
                "scheduled_at": {"type": "string", "format": "date-time"},
                "status": {"$ref": "#/components/schemas/ScheduledCallbackStatus"},
                "reason": {"type": "string", "nullable": True},
                "instructions": {"type": "string", "nullable": True},
                "summary": {"type": "string", "nullable": True},
                "pipeline_config": {"$ref": "#/components/schemas/JsonObject"},
                "metadata": {"$ref": "#/components/schemas/JsonObject"},
                "failure_cause": {"type": "string", "nullable": True},
                "attempted_at": {"type": "string", "format": "date-time", "nullable": True},
                "dispatched_at": {"type": "string", "format": "date-time", "nullable": True},
                "cancelled_at": {"type": "string", "format": "date-time", "nullable": True},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
            },
        },
        "ScheduledCallbackStatus": {
            "type": "string",
            "enum": ["scheduled", "dispatching", "dispatched", "cancelled", "failed"],
        },
        "E164": {"type": "string", "pattern": "^\\+[1-9]\\d{6,14}$", "examples": ["+12015551234"]},
        "JsonObject": {"type": "object", "additionalProperties": True},
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string", "description": "Human-readable message."},
                "code": {"type": "string", "description": "Machine-readable code."},
            },
        },
    },
    "responses": {
        "Unauthorized": {
            "description": "Missing or invalid bearer token.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"},
                    "examples": {
                        "default": {"value": {"error": "Unauthorized", "code": "UNAUTHORIZED"}}
                    },
                }
            },
        }
    },
    "parameters": {
        "Id": {
            "in": "path",
            "name": "id",
            "required": True,
            "schema": {"type": "string"},
            "description": "Resource id.",
        }
    },
    "securitySchemes": {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "API key (sk_live_...)"}
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Callbacks admin API",
            "version": "1.0.0",
            "description": "List, inspect, cancel, and dispatch scheduled callbacks.",
        },
        "security": [{"bearerAuth": []}],
        "paths": PATHS,
        "components": COMPONENTS,
    }
