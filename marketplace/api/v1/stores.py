"""``/stores``: the stores a key may act for (a store key: its one store)."""
from __future__ import annotations

from spectree import Response as Doc

from core.db import db
from core.txn import transaction
from marketplace.api.v1 import schemas
from marketplace.api.v1.base import bp, json_response, merchant_caller, page_of, spec, store_for, visible_stores
from merchants.models import Store

ERRORS = {f"HTTP_{code}": schemas.Problem for code in (401, 403, 404, 422, 429)}


def store_out(store: Store) -> dict:
    return {"id": store.id, "name": store.name, "address": store.address, "circle_id": store.circle_id,
            "cuisines": list(store.cuisines or []), "status": getattr(store.status, "value", store.status)}


@bp.get("/stores")
@spec.validate(query=schemas.Page, resp=Doc(HTTP_200=schemas.StoreList, **ERRORS), tags=["stores"])
def list_stores(query: schemas.Page):
    """The key's stores, by id."""
    who = merchant_caller()
    with transaction(db.session) as session:
        rows, more = page_of(session, visible_stores(who), Store.id, query)
        return json_response({"data": [store_out(s) for s in rows], "has_more": more})


@bp.get("/stores/<int:store_id>")
@spec.validate(resp=Doc(HTTP_200=schemas.Store, **ERRORS), tags=["stores"])
def get_store(store_id: int):
    """One of the key's stores."""
    who = merchant_caller()
    with transaction(db.session) as session:
        return json_response(store_out(store_for(session, who, store_id)))

