"""Portal users and their roles."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, Enum, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from core.db import Base, utcnow


class Role(str, enum.Enum):
    admin = "admin"  # platform admin
    manager = "manager"  # regional manager, scoped to regions
    owner = "owner"  # merchant owner
    cashier = "cashier"  # store staff without WeCom


user_regions = Table(
    "user_regions",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("region_id", ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    # owners and cashiers belong to one merchant; cashiers to one store of it
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    # Part of the Flask-Login id kept in the session and the remember cookie: bumping it
    # (deactivation, a new password, logging out) ends every session the user has open.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    regions = relationship("Region", secondary=user_regions)

    def end_sessions(self) -> None:
        """Log out everywhere: every session and remember cookie issued so far stops working."""
        self.session_version = (self.session_version or 1) + 1

    @validates("active")
    def _on_active(self, _key, value: bool) -> bool:
        if self.active and not value:
            self.end_sessions()
        return value

    @validates("password_hash")
    def _on_password(self, _key, value: str) -> str:
        if self.password_hash is not None and value != self.password_hash:
            self.end_sessions()
        return value

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """Flask-Login's "alternative id": ``id:session_version``, so a bump refuses old
        sessions and remember cookies (``accounts.access`` loads users by it)."""
        return f"{self.id}:{self.session_version or 1}"
