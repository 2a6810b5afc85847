"""The demo corp: members, WeChat users (diners), a few existing customers and groups.

Idempotent: seeding a populated database does nothing. Ids are derived from names, so a
reset reproduces the same external_userids and chat_ids.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from wecom.simulator import ids
from wecom.simulator.models import Follow, GroupChat, GroupMember, Member, Tag, TagGroup, WechatUser

# userid, name, position, gender (1 male, 2 female), allowed to hold customers
MEMBERS = [
    ("zhangwei", "张伟", "店长", 1, True),
    ("lina", "李娜", "店长", 2, True),
    ("wangfang", "王芳", "前台", 2, True),
    ("liuyang", "刘洋", "服务员", 1, True),
    ("chenjing", "陈静", "服务员", 2, True),
    ("yangmin", "杨敏", "店员", 2, True),
    ("zhaolei", "赵磊", "厨师", 1, False),
    ("huangli", "黄丽", "财务", 2, False),
]

DINERS = [
    ("wangxiaoming", "王小明", 1), ("lixue", "李雪", 2), ("zhoujie", "周杰", 1), ("chenxi", "晨曦", 2),
    ("liuli", "刘丽", 2), ("sunhao", "孙浩", 1), ("maomao", "毛毛", 0), ("tiantian", "甜甜", 2),
    ("laozhang", "老张", 1), ("xiaomei", "小美", 2), ("dagang", "大刚", 1), ("fangfang", "芳芳", 2),
    ("yueyue", "悦悦", 2), ("haohao", "浩浩", 1), ("xiaoyu", "小雨", 2), ("ajie", "阿杰", 1),
    ("lanlan", "兰兰", 2), ("dongdong", "东东", 1), ("jiajia", "佳佳", 2), ("wenwen", "雯雯", 2),
    ("kaikai", "凯凯", 1), ("xiaolong", "小龙", 1), ("mengmeng", "萌萌", 2), ("qiqi", "琪琪", 2),
    ("zhuzhu", "朱朱", 0), ("laoli", "老李", 1), ("xiaofeng", "小枫", 1), ("ningning", "宁宁", 2),
    ("beibei", "贝贝", 2), ("huahua", "花花", 2),
]

# member -> diners already their customers
CONTACTS = {
    "zhangwei": ["wangxiaoming", "lixue", "zhoujie"],
    "lina": ["chenxi", "liuli"],
    "wangfang": ["sunhao"],
}

# name, owner, external members
GROUPS = [
    ("邻里美食群", "zhangwei", ["wangxiaoming", "lixue", "zhoujie", "maomao"]),
    ("幸福里吃货群", "lina", ["chenxi", "liuli", "tiantian"]),
]

TAG_GROUPS = [("客户等级", ["普通", "VIP"])]

SEED_TIME = 1_700_000_000.0  # fixed, so seed data sits in the past whatever the clock says


def seed(session: Session, corp_id: str) -> bool:
    """Fill an empty database; returns False when there was already data."""
    if session.scalars(select(Member).limit(1)).first() is not None:
        return False
    for n, (userid, name, position, gender, contact) in enumerate(MEMBERS):
        session.add(Member(userid=userid, name=name, position=position, gender=gender,
                           mobile=f"138000{n + 1:05d}", customer_contact=contact))
    externals = {}
    for handle, nickname, gender in DINERS:
        externals[handle] = ids.external_userid(corp_id, handle)
        session.add(WechatUser(id=handle, nickname=nickname, gender=gender, unionid=ids.unionid(handle),
                               external_userid=externals[handle]))
    session.flush()
    for userid, handles in CONTACTS.items():
        for n, handle in enumerate(handles):
            session.add(Follow(userid=userid, external_userid=externals[handle], createtime=SEED_TIME + n,
                               add_way=1, oper_userid=externals[handle], state=""))
    for n, (name, owner, handles) in enumerate(GROUPS):
        chat_id = ids.stable_id("wr", 30, corp_id, "group", name)
        session.add(GroupChat(chat_id=chat_id, name=name, owner=owner, notice="欢迎来到" + name,
                              create_time=SEED_TIME + n))
        session.flush()
        session.add(GroupMember(chat_id=chat_id, member_id=owner, type=1, join_time=SEED_TIME, join_scene=1))
        for handle in handles:
            session.add(GroupMember(chat_id=chat_id, member_id=externals[handle], type=2, join_time=SEED_TIME,
                                    join_scene=3, invitor=owner))
    for name, tags in TAG_GROUPS:
        group_id = ids.stable_id("et", 30, corp_id, "tag_group", name)
        session.add(TagGroup(group_id=group_id, name=name, create_time=SEED_TIME))
        session.flush()
        for tag in tags:
            session.add(Tag(id=ids.stable_id("et", 30, corp_id, "tag", name, tag), group_id=group_id, name=tag,
                            create_time=SEED_TIME))
    return True
