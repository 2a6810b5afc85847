"""The API's shapes (pydantic): what the OpenAPI document says and what requests are held to.

Money is integer fen, times are ISO 8601 in UTC, ids are positive 32-bit integers: the same
bounds the portal's forms enforce, so an absurd value is a 422 here, never a database error."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Field(ge=1, le=2_147_483_647)
NO_NUL = r"^[^\x00]*$"  # PostgreSQL keeps no NUL in a string
MAX_FEN = 100_000_000  # a million yuan: no restaurant bill is larger


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    reason: str | None = Field(None, description="a coupon rule's own refusal code (already_redeemed, expired …)")
    field: str | None = None
    errors: list[dict] | None = None
    retry_after: int | None = Field(None, description="seconds, with a 429 (also the Retry-After header)")


class Page(Strict):
    limit: int = Field(20, ge=1, le=100)
    starting_after: int | None = Field(None, ge=1, le=2_147_483_647, description="the last id of the previous page")


class Store(BaseModel):
    id: int
    name: str
    address: str
    circle_id: int
    cuisines: list[str]
    status: str


class StoreList(BaseModel):
    data: list[Store]
    has_more: bool


class Template(BaseModel):
    id: int
    name: str
    kind: str
    value: int = Field(description="fen off (amount_off, voucher), or the payable percent (percent_off)")
    cap_fen: int | None
    min_spend_fen: int
    funded_by: str
    status: str


class CouponQuery(Strict):
    store_id: int | None = Field(None, ge=1, le=2_147_483_647, description="where it would be redeemed")
    bill_fen: int | None = Field(None, ge=1, le=MAX_FEN, description="the bill, to price the discount")


class Coupon(BaseModel):
    code: str
    status: str
    template: Template
    valid_from: datetime
    valid_until: datetime
    redeemable: bool = Field(description="at this store and bill, now")
    reason: str | None = Field(None, description="why not, as a rule code")
    message: str | None = Field(None, description="why not, for the cashier, in the request's language")
    discount_fen: int | None = None
    payable_fen: int | None = None


class RedeemIn(Strict):
    code: str = Field(min_length=1, max_length=32, pattern=NO_NUL)
    store_id: int | None = Field(None, ge=1, le=2_147_483_647, description="required for a merchant key")
    bill_fen: int = Field(ge=1, le=MAX_FEN)


class ReverseIn(Strict):
    reason: str = Field("", max_length=255, pattern=NO_NUL)


class Redemption(BaseModel):
    id: int
    code: str
    store_id: int
    bill_fen: int
    discount_fen: int
    payable_fen: int
    redeemed_at: datetime
    status: Literal["redeemed", "reversed"]
    reversible_until: datetime | None


class RedemptionList(BaseModel):
    data: list[Redemption]
    has_more: bool


class RedemptionPage(Page):
    store_id: int | None = Field(None, ge=1, le=2_147_483_647)


# ---------------------------------------------------------------- templates and channels
# A template's numbers are bounded as the portal's form bounds them (422 past these); the
# rules between fields (a threshold above the amount, a percent with a cap, dates or days)
# are the template service's own, a 400 problem naming the `field`.

IdInt = Annotated[int, Field(ge=1, le=2_147_483_647)]
Weekday = Annotated[int, Field(ge=1, le=7)]
TemplateKind = Literal["amount_off", "percent_off", "voucher"]
TemplateState = Literal["draft", "active", "paused", "ended"]
ALL_WEEK = [1, 2, 3, 4, 5, 6, 7]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def Keep(**kw):  # noqa: N802 - reads as a type in the field list
    """An optional field of an update that may not be null: left out, the template keeps its value."""
    return Field(None, json_schema_extra=_no_default, **kw)


class TemplateIn(Strict):
    """A new template's terms. Money in fen; `value` is the fen off (amount_off, voucher) or
    the percent the diner pays (percent_off: 1–99, 85 = 八五折, with `cap_fen`)."""

    name: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    kind: TemplateKind
    value: int = Field(ge=1, le=MAX_FEN)
    cap_fen: int | None = Field(None, ge=1, le=MAX_FEN, description="the most a percent_off coupon takes off")
    min_spend_fen: int = Field(0, ge=0, le=MAX_FEN, description="the bill it needs (amount_off: at least value)")
    valid_from: date | None = Field(None, description="local dates, both inclusive; or valid_days")
    valid_until: date | None = None
    valid_days: int | None = Field(None, ge=1, le=366, description="days from issue, instead of dates")
    weekdays: list[Weekday] = Field(ALL_WEEK, max_length=7, description="ISO weekdays it is usable on (1 = Monday)")
    hours_start: int | None = Field(None, ge=0, le=1440, description="minutes after local midnight; both or neither")
    hours_end: int | None = Field(None, ge=0, le=1440)
    store_ids: list[IdInt] = Field([], max_length=100, description="where it is usable; empty = every store")
    total_stock: int | None = Field(None, ge=1, le=1_000_000, description="null = unlimited")
    per_diner_limit: int = Field(1, ge=1, le=100)
    status: Literal["draft", "active"] = "draft"
    description: str = Field("", max_length=500, pattern=NO_NUL)
    claimable: bool = Field(False, description="diners may claim it themselves on the store page")


class TemplateUpdate(Strict):
    """Changes to a template: only the fields sent change (null clears a nullable one: from
    dates to `valid_days`, send the dates as null). Once a coupon is out, its terms (kind,
    value, cap, threshold, validity) are frozen."""

    name: str = Keep(min_length=1, max_length=64, pattern=NO_NUL)
    kind: TemplateKind = Keep()
    value: int = Keep(ge=1, le=MAX_FEN)
    cap_fen: int | None = Field(None, ge=1, le=MAX_FEN)
    min_spend_fen: int = Keep(ge=0, le=MAX_FEN)
    valid_from: date | None = None
    valid_until: date | None = None
    valid_days: int | None = Field(None, ge=1, le=366)
    weekdays: list[Weekday] = Keep(max_length=7)
    hours_start: int | None = Field(None, ge=0, le=1440)
    hours_end: int | None = Field(None, ge=0, le=1440)
    store_ids: list[IdInt] = Keep(max_length=100)
    total_stock: int | None = Field(None, ge=1, le=1_000_000)
    per_diner_limit: int = Keep(ge=1, le=100)
    description: str = Keep(max_length=500, pattern=NO_NUL)
    claimable: bool = Keep()


class TemplateStatusIn(Strict):
    status: TemplateState = Field(description="draft → active | ended; active ⇄ paused; either → ended (final)")


class TemplatePage(Page):
    status: TemplateState | None = None


class TemplateDetail(BaseModel):
    id: int
    name: str
    kind: TemplateKind
    value: int
    cap_fen: int | None
    min_spend_fen: int
    valid_from: date | None
    valid_until: date | None
    valid_days: int | None
    weekdays: list[int]
    hours_start: int | None
    hours_end: int | None
    store_ids: list[int] = Field(description="empty = every store of the merchant")
    total_stock: int | None
    issued_count: int
    per_diner_limit: int
    funded_by: str
    status: TemplateState
    description: str
    claimable: bool
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    data: list[TemplateDetail]
    has_more: bool


class Poster(BaseModel):
    size: str = Field(description="a5 (door poster) or tent (table tent)")
    format: Literal["png", "pdf"]
    url: str = Field(description="the portal's download; it needs the owner's portal login")


class Channel(BaseModel):
    id: int
    store_id: int
    name: str
    kind: str = Field(description="door, table, receipt, flyer or other")
    kind_label: str
    active: bool
    contacts: int = Field(description="scans that became contacts")
    qr_code: str | None = Field(description="WeCom's image of the contact-me QR")
    posters: list[Poster] = Field(description="printable posters of the QR (none until WeCom made it)")
    created_at: datetime


class ChannelList(BaseModel):
    data: list[Channel]
    has_more: bool
