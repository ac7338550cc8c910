from marshmallow import Schema, fields


class Item(Schema):
    sku = fields.String()
