"""The API's shapes (pydantic): what the OpenAPI document says and what requests are held to.

Money is integer fen, times are ISO 8601 in UTC, ids are positive 32-bit integers: the same
bounds the portal's forms enforce, so an absurd value is a 422 here, never a database error."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Id = Field(ge=1, le=2_147_483_647)
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
    value: int = Field(description="fen off (cash_off), or the payable percent (percent_off)")
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
    code: str = Field(min_length=1, max_length=32)
    store_id: int | None = Field(None, ge=1, le=2_147_483_647, description="required for a merchant key")
    bill_fen: int = Field(ge=1, le=MAX_FEN)


class ReverseIn(Strict):
    reason: str = Field("", max_length=255)


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
