from marshmallow import Schema, fields


class Item(Schema):
    label = fields.String()
