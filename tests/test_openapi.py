"""The OpenAPI document: built with apispec from the registered handlers, their schemas and the URL map."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask
from marshmallow import EXCLUDE, Schema, fields, validate

from flask_asyncendpoints import AsyncEndpoints, ConfigurationError, JobContext
from flask_asyncendpoints.cli import cli

from . import openapi_twins


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


class LenientSchema(Schema):
    class Meta:
        unknown = EXCLUDE
        description = "Unknown fields are dropped."

    name = fields.String()


class JobSchema(Schema):
    """A user's schema that happens to be called like the library's job record."""

    title = fields.String(required=True)


class ProblemSchema(Schema):
    reason = fields.String()


def make_app(**config: Any) -> tuple[AsyncEndpoints, Flask]:
    ae = AsyncEndpoints()

    @ae.handler("Order", request_schema=OrderSchema, response_schema=Address)
    def order(ctx: JobContext) -> Any:
        """Place an order."""
        return ctx.request

    ae.handler("Report")(lambda ctx: None)
    ae.handler("Lenient", request_schema=LenientSchema)(lambda ctx: None)
    ae.handler("Hire", request_schema=JobSchema, response_schema=ProblemSchema)(lambda ctx: None)
    ae.route("/api/orders", "Order", methods=["POST", "PUT"])
    ae.route("/api/reports/<int:year>", "Report", methods=["DELETE"])
    ae.route("/api/lenient", "Lenient")
    ae.route("/api/hire", "Hire", responses={401: "Not logged in."})
    app = Flask("shop")
    app.config.update(ASYNCENDPOINTS_WORKER=False, **config)
    ae.init_app(app)
    return ae, app


def served(**config: Any) -> dict[str, Any]:
    _, app = make_app(ASYNCENDPOINTS_OPENAPI_URL="/openapi.json", **config)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_off_by_default() -> None:
    _, app = make_app()
    assert app.test_client().get("/openapi.json").status_code == 404


def test_the_document_describes_endpoints_and_job_routes() -> None:
    doc = served()

    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {"title": "shop", "version": "1.0.0"}
    paths = doc["paths"]
    assert set(paths) == {"/api/orders", "/api/reports/{year}", "/api/lenient", "/api/hire", "/jobs/{job_id}"}
    post = paths["/api/orders"]["post"]
    assert post["description"] == "Place an order."
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
    assert set(post["responses"]) == {"200", "202", "400", "409", "413", "415", "422", "503"}
    assert post["responses"]["400"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/asyncendpoints.Problem"}}
    }
    assert set(post["responses"]["202"]["headers"]) == {"Location", "Retry-After"}
    assert post["x-job-result"] == {"$ref": "#/components/schemas/Address"}
    assert "put" in paths["/api/orders"]
    report = paths["/api/reports/{year}"]["delete"]
    assert "requestBody" not in report
    # No body, but headers and parameters are stored with the job, and they have a limit.
    assert set(report["responses"]) == {"200", "202", "400", "409", "413", "503"}
    # The int converter matches no negative numbers, so none is offered as valid.
    assert report["parameters"][0] == {
        "name": "year",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
    assert paths["/api/hire"]["post"]["responses"]["401"]["description"] == "Not logged in."


def test_every_answer_of_the_job_routes_is_documented() -> None:
    job = served()["paths"]["/jobs/{job_id}"]
    assert set(job) == {"get", "delete"}
    assert set(job["get"]["responses"]) == {"200", "400", "404", "503"}
    assert any(
        p["name"] == "wait" and p["schema"] == {"type": "number", "minimum": 0} for p in job["get"]["parameters"]
    )
    delete = job["delete"]
    assert set(delete["responses"]) == {"200", "202", "404", "409", "503"}
    assert "a running job asked to cancel always ends Canceled" in delete["description"]


def test_schemas_are_translated_by_apispec() -> None:
    schemas = served()["components"]["schemas"]
    order = schemas["Order"]

    assert order["required"] == ["data", "ship_to"]
    props = order["properties"]
    assert props["data"] == {"type": "string", "description": "What to process."}
    assert props["processingPriority"] == {"type": "integer", "minimum": 1, "maximum": 5}
    # An exclusive bound stays exclusive (apispec alone writes it as an inclusive one).
    assert props["ratio"] == {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "maxItems": 3}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert props["color"]["enum"] == ["red", "blue"]
    assert props["ship_to"] == {"$ref": "#/components/schemas/Address"}
    assert props["extra"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert schemas["Address"]["properties"]["city"] == {"type": "string", "minLength": 1, "maxLength": 80}
    assert list(schemas["asyncendpoints.Job"]["properties"])[:3] == ["id", "name", "status"]
    assert schemas["asyncendpoints.Problem"]["required"] == ["type", "title", "status", "detail"]


def test_request_schemas_say_whether_unknown_fields_are_refused() -> None:
    schemas = served()["components"]["schemas"]
    assert schemas["Order"]["additionalProperties"] is False  # marshmallow's default: RAISE
    assert schemas["Address"]["additionalProperties"] is False
    # EXCLUDE accepts and drops them; said even with a Meta.description (where apispec says nothing).
    assert "additionalProperties" not in schemas["Lenient"]
    assert schemas["Lenient"]["description"] == "Unknown fields are dropped."


def test_user_schemas_named_like_the_librarys_stay_the_users() -> None:
    doc = served()
    schemas = doc["components"]["schemas"]
    hire = doc["paths"]["/api/hire"]["post"]
    assert hire["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}
    assert schemas["Job"]["properties"] == {"title": {"type": "string"}}
    assert schemas["Problem"]["properties"] == {"reason": {"type": "string"}}
    assert hire["x-job-result"] == {"$ref": "#/components/schemas/Problem"}
    assert hire["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/asyncendpoints.Job"
    }


def test_two_schemas_with_one_name_in_two_modules_stay_distinct() -> None:
    ae = AsyncEndpoints()
    ae.handler("A", request_schema=openapi_twins.first.Item)(lambda ctx: None)
    ae.handler("B", request_schema=openapi_twins.second.Item)(lambda ctx: None)
    ae.route("/a", "A")
    ae.route("/b", "B")
    app = Flask("twins")
    ae.init_app(app)

    doc = ae.openapi_spec(app).to_dict()

    refs = {p: doc["paths"][p]["post"]["requestBody"]["content"]["application/json"]["schema"] for p in ("/a", "/b")}
    first, second = (ref["$ref"].rsplit("/", 1)[1] for ref in refs.values())
    assert first == "tests.openapi_twins.first.Item"
    assert second == "tests.openapi_twins.second.Item"
    schemas = doc["components"]["schemas"]
    assert set(schemas[first]["properties"]) == {"sku"}
    assert set(schemas[second]["properties"]) == {"label"}


def test_title_and_version_are_configurable() -> None:
    doc = served(ASYNCENDPOINTS_OPENAPI_TITLE="Shop API", ASYNCENDPOINTS_OPENAPI_VERSION="2.4.1")
    assert doc["info"] == {"title": "Shop API", "version": "2.4.1"}


def test_paths_carry_the_blueprint_prefix() -> None:
    ae = AsyncEndpoints()
    ae.handler("Report")(lambda ctx: None)
    admin = Blueprint("admin", __name__, url_prefix="/admin")
    ae.route("/reports", "Report", blueprint=admin)
    app = Flask("prefixed")
    ae.init_app(app, url_prefix="/async")
    app.register_blueprint(admin)

    doc = ae.openapi_spec(app).to_dict()

    assert set(doc["paths"]) == {"/admin/reports", "/async/jobs/{job_id}"}
    assert doc["paths"]["/admin/reports"]["post"]["operationId"] == "admin.Report.post"


def test_paths_merge_into_an_existing_apispec_document() -> None:
    class Pet(Schema):
        name = fields.String()

    spec = APISpec("Pets", "3.2.0", "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.schema("Pet", schema=Pet)
    spec.path("/pets", operations={"get": {"responses": {"200": {"description": "The pets."}}}})
    ae, app = make_app()

    ae.openapi_spec(app, spec=spec)

    doc = spec.to_dict()
    assert doc["info"] == {"title": "Pets", "version": "3.2.0"}
    assert {"/pets", "/api/orders", "/jobs/{job_id}"} <= set(doc["paths"])
    assert {"Pet", "Order", "asyncendpoints.Job"} <= set(doc["components"]["schemas"])
    # An OpenAPI 3.0 document gets 3.0's way of saying "or null".
    assert doc["components"]["schemas"]["asyncendpoints.Job"]["properties"]["startedAt"] == {
        "type": "string",
        "format": "date-time",
        "nullable": True,
    }
    with pytest.raises(ConfigurationError, match="once"):
        ae.openapi_spec(app, spec=spec)


def test_a_document_without_the_marshmallow_plugin_is_refused() -> None:
    ae, app = make_app()
    with pytest.raises(ConfigurationError, match="MarshmallowPlugin"):
        ae.openapi_spec(app, spec=APISpec("Bare", "1", "3.1.0"))


def test_the_cli_prints_the_document() -> None:
    _, app = make_app(ASYNCENDPOINTS_OPENAPI_TITLE="Shop API")
    result = app.test_cli_runner().invoke(cli, ["openapi"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["info"]["title"] == "Shop API"
    assert "/api/orders" in doc["paths"]
