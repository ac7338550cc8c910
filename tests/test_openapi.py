"""The OpenAPI document built from the registered handlers and their schemas."""

from __future__ import annotations

import enum
from typing import Any

from flask import Flask
from marshmallow import Schema, fields, validate

from flask_asyncendpoints import AsyncEndpoints, JobContext


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(Schema):
    city = fields.String(required=True, validate=validate.Length(min=1, max=80))


class OrderSchema(Schema):
    data = fields.String(required=True, metadata={"description": "What to process."})
    priority = fields.Integer(data_key="processingPriority", validate=validate.Range(1, 5))
    ratio = fields.Float(allow_none=True, validate=validate.Range(0, 1, min_inclusive=False))
    tags = fields.List(fields.String(), validate=validate.Length(max=3))
    when = fields.DateTime()
    kind = fields.String(validate=validate.OneOf(["a", "b"]))
    color = fields.Enum(Color, by_value=True)
    ship_to = fields.Nested(Address, required=True)
    extra = fields.Dict(keys=fields.String(), values=fields.Integer())


def make_app(**config: Any) -> Flask:
    ae = AsyncEndpoints()

    @ae.handler("Order", request_schema=OrderSchema, response_schema=Address)
    def order(ctx: JobContext) -> Any:
        """Place an order."""
        return ctx.request

    ae.handler("Report")(lambda ctx: None)
    ae.route("/api/orders", "Order", methods=["POST", "PUT"])
    ae.route("/api/reports/<int:year>", "Report", methods=["DELETE"])
    app = Flask("shop")
    app.config.update(ASYNCENDPOINTS_WORKER=False, **config)
    ae.init_app(app)
    return app


def test_off_by_default() -> None:
    assert make_app().test_client().get("/openapi.json").status_code == 404


def test_the_document_describes_endpoints_and_job_routes() -> None:
    doc = make_app(ASYNCENDPOINTS_OPENAPI_URL="/openapi.json").test_client().get("/openapi.json").get_json()

    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "shop"
    paths = doc["paths"]
    assert set(paths) == {"/api/orders", "/api/reports/{year}", "/jobs/{job_id}"}
    post = paths["/api/orders"]["post"]
    assert post["description"] == "Place an order."
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    assert {"202", "400", "413", "415", "422", "503"} <= set(post["responses"])
    assert "put" in paths["/api/orders"]
    report = paths["/api/reports/{year}"]["delete"]
    assert "requestBody" not in report
    assert report["parameters"][0] == {"name": "year", "in": "path", "required": True, "schema": {"type": "integer"}}
    job = paths["/jobs/{job_id}"]
    assert set(job) == {"get", "delete"}
    assert {"200", "202", "404", "409"} <= set(job["delete"]["responses"])
    assert any(p["name"] == "wait" for p in job["get"]["parameters"])


def test_schemas_are_translated() -> None:
    doc = make_app(ASYNCENDPOINTS_OPENAPI_URL="/spec").test_client().get("/spec").get_json()
    schemas = doc["components"]["schemas"]
    order = schemas["Order"]

    assert order["required"] == ["data", "ship_to"]
    props = order["properties"]
    assert props["data"] == {"type": "string", "description": "What to process."}
    assert props["processingPriority"] == {"type": "integer", "minimum": 1, "maximum": 5}
    assert props["ratio"] == {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "maxItems": 3}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert props["color"] == {"enum": ["red", "blue"]}
    assert props["ship_to"] == {"$ref": "#/components/schemas/Address"}
    assert props["extra"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert schemas["Address"]["properties"]["city"] == {"type": "string", "minLength": 1, "maxLength": 80}
    assert list(schemas["Job"]["properties"])[:3] == ["id", "name", "status"]
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]
