"""The catalog snapshot: every public app version on the Marketplace, from a CSV file."""

from __future__ import annotations

import typing as t

from singer_sdk import SchemaDirectory, StreamSchema

from tap_common.coercion import TypedRows, json_type
from tap_common.errors import VendorAPIError
from tap_common.exports import ExportFile, rows_with_resume
from tap_marketplace import flatten, schemas
from tap_marketplace.client import MarketplaceStream
from tap_marketplace.streams.aggregates import project

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

SCHEMAS = SchemaDirectory(schemas)


class ProductCatalogStream(MarketplaceStream):
    """Every public app version on the Marketplace, from the latest snapshot CSV.

    ``/reporting/product-catalog/latest`` gives a presigned URL (valid for
    ``expiresInSeconds``) on another host; the CSV (~150 MB) is streamed line by line
    and reaches that host without credentials. A dropped download starts again with a
    fresh URL and skips the rows already emitted. Not selected by default.
    """

    name = "product_catalog"
    path = "/rest/3/reporting/product-catalog/latest"
    schema = StreamSchema(SCHEMAS)
    primary_keys = ("product_id", "app_software_hosting", "version_number")
    selected_by_default = False
    keys: t.ClassVar[tuple[str, ...]] = primary_keys

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        # The snapshot is filled loosely: a cell that is not of its type becomes null.
        self.typed_fields = TypedRows(self.schema, strict=False)
        self.lists = tuple(name for name, spec in self.schema["properties"].items()
                           if json_type(spec) == "array")

    def get_records(self, context: Context | None) -> t.Iterable[dict]:
        properties = tuple(self.schema["properties"])
        snapshot: dict[str, t.Any] = {}

        def download() -> t.Iterator[dict[str, str]]:
            latest = self.decode_json(self.send("GET", self.path))
            url = latest.get("presignedUrl") if isinstance(latest, dict) else None
            if not url:
                msg = f"{self.name}: {self.path} gave no presignedUrl: {str(latest)[:200]}"
                raise VendorAPIError(msg)
            snapshot["date"] = str(latest.get("date") or "")[:10] or None
            response = self.send("GET", url, stream=True)
            where = f"snapshot {snapshot['date']} from GET {self.describe_url(url)}"
            return ExportFile(response, stream=self.name, export=where).csv_rows(
                required_columns=self.keys)

        for row in rows_with_resume(download):
            yield project(self.typed(row, snapshot.get("date")), properties)

    def typed(self, row: dict[str, str], snapshot_date: str | None) -> dict[str, t.Any]:
        record: dict[str, t.Any] = {
            name: (value if value != "" else None) for name, value in row.items()}
        record["snapshot_date"] = snapshot_date
        self.typed_fields.row(record)
        for name in self.lists:
            record[name] = to_list(record.get(name))
        for name in self.keys:
            record[name] = record.get(name) or flatten.ABSENT
        return record


def to_list(value: str | None) -> list[str] | None:
    """``["A", "B"]``, ``{A,B}`` or ``A, B`` as a list of names."""
    if value is None:
        return None
    inner = value.strip()
    if inner[:1] in "[{(" and inner[-1:] in "]})":
        inner = inner[1:-1]
    items = [item.strip().strip("'\"").strip() for item in inner.split(",")]
    return [item for item in items if item]


