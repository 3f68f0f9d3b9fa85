"""Batch threading: Jamie Zawinski's algorithm (https://www.jwz.org/doc/threading.html).

The steps, numbered as JWZ numbers them:

1. One container per Message-ID. Each References chain links root → ... → parent, never
   replacing a parent some earlier chain set (1B); the message itself is then put under
   the last reference, replacing any parent guessed before (1C). No link makes a loop.
2. The root set: containers without a parent. (3: the id table is dropped.)
4. Prune empty containers: one without children goes; one with children is replaced by
   them, except at the root, where only a single child is promoted.
5. Group by subject, narrowed to :func:`~email_service.mail.threadkeys.subject_linked`;
   roots merge as JWZ merges them: a reply under the non-reply, else both under a new
   empty root.
6. Siblings are sorted by earliest date, then key (JWZ's optional step).

Two deviations keep the threads equal to the components of the link relation described
in :mod:`~email_service.mail.threadkeys`, hence independent of input order and equal to
what the incremental assigner builds: a second message with a Message-ID already seen
(the same message in another folder) hangs under the first instead of being set apart;
and a link that step 1 refused or replaced still joins the two trees, whose roots become
children of one empty root before pruning.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from email_service.mail.threadkeys import (
    SUBJECT_WINDOW,
    ThreadInput,
    is_reply_subject,
)

# Sort key of a subtree: earliest date (as a timestamp; undated last), then smallest key.
SortKey = tuple[float, str]
UNDATED = float("inf")


@dataclass(frozen=True)
class ThreadNode:
    """A node of a thread tree: a message (its key) or a placeholder (key None)."""

    key: str | None
    children: tuple[ThreadNode, ...] = ()

    def message_keys(self) -> Iterator[str]:
        """Every message key in this subtree, parents before children."""
        stack: list[ThreadNode] = [self]
        while stack:
            node = stack.pop()
            if node.key is not None:
                yield node.key
            stack.extend(reversed(node.children))


class _Container:
    """A JWZ container: maybe a message, a parent, children."""

    __slots__ = ("children", "message", "parent")

    def __init__(self, message: ThreadInput | None = None) -> None:
        self.message = message
        self.parent: _Container | None = None
        self.children: list[_Container] = []


class _DisjointSet:
    """Union-find over containers, by identity."""

    def __init__(self) -> None:
        self.up: dict[_Container, _Container] = {}

    def find(self, item: _Container) -> _Container:
        """The representative of the item's set."""
        root = item
        while (parent := self.up.get(root, root)) is not root:
            root = parent
        while item is not root:
            self.up[item], item = root, self.up.get(item, item)
        return root

    def union(self, a: _Container, b: _Container) -> None:
        """Join the sets of ``a`` and ``b``."""
        self.up[self.find(a)] = self.find(b)


def thread_messages(messages: Sequence[ThreadInput]) -> dict[str, str]:
    """Each message key → its thread's root message key (under a placeholder, the earliest)."""
    result: dict[str, str] = {}
    for root in build_forest(messages):
        root_key = next(root.message_keys())
        for key in root.message_keys():
            result[key] = root_key
    return result


def build_forest(messages: Sequence[ThreadInput]) -> list[ThreadNode]:
    """The JWZ thread trees of the messages, sorted by date."""
    builder = _Builder()
    for message in messages:
        builder.add(message)
    roots = _prune(builder.glued_roots())
    roots = _group_by_subject(roots)
    return _freeze(roots)


class _Builder:
    """Step 1: the id table, the containers and the links between them."""

    def __init__(self) -> None:
        self.table: dict[str, _Container] = {}
        self.containers: list[_Container] = []
        self.links = _DisjointSet()

    def new(self, message: ThreadInput | None = None) -> _Container:
        """A container outside the id table."""
        container = _Container(message)
        self.containers.append(container)
        return container

    def for_id(self, message_id: str) -> _Container:
        """The container of a Message-ID, made empty on first sight."""
        if message_id not in self.table:
            self.table[message_id] = self.new()
        return self.table[message_id]

    def add(self, message: ThreadInput) -> None:
        """Steps 1A-1C for one message."""
        own = self.own_container(message)
        chain = [self.for_id(ref) for ref in message.parent_ids]
        for parent, child in pairwise(chain):
            self.links.union(parent, child)
            if child.parent is None and not _reaches(child, parent):
                _attach(child, parent)
        if chain:
            self.links.union(chain[-1], own)
            if not _reaches(own, chain[-1]):
                _attach(own, chain[-1])

    def own_container(self, message: ThreadInput) -> _Container:
        """The message's container; a duplicate Message-ID hangs under the first copy."""
        if message.message_id is None:
            return self.new(message)
        existing = self.for_id(message.message_id)
        if existing.message is None:
            existing.message = message
            return existing
        duplicate = self.new(message)
        self.links.union(existing, duplicate)
        _attach(duplicate, existing)
        return duplicate

    def glued_roots(self) -> list[_Container]:
        """Step 2, with the roots of one linked component under one empty root."""
        groups: dict[_Container, list[_Container]] = {}
        for container in self.containers:
            if container.parent is None:
                groups.setdefault(self.links.find(container), []).append(container)
        roots = []
        for members in groups.values():
            if len(members) == 1:
                roots.append(members[0])
                continue
            glue = _Container()
            for member in members:
                _attach(member, glue)
            roots.append(glue)
        return roots


def _reaches(ancestor: _Container, node: _Container) -> bool:
    """Whether ``ancestor`` is ``node`` or one of its ancestors (a link would loop)."""
    current: _Container | None = node
    while current is not None:
        if current is ancestor:
            return True
        current = current.parent
    return False


def _attach(child: _Container, parent: _Container) -> None:
    """Move ``child`` under ``parent``."""
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _postorder(roots: Iterable[_Container]) -> list[_Container]:
    """Every container below and including the roots, children before parents."""
    order: list[_Container] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    order.reverse()
    return order


def _prune(roots: list[_Container]) -> list[_Container]:
    """Step 4: drop or replace empty containers."""
    for node in _postorder(roots):
        node.children = _pruned(node.children, at_root=False)
        for child in node.children:
            child.parent = node
    kept = _pruned(roots, at_root=True)
    for root in kept:
        root.parent = None
    return kept


def _pruned(nodes: list[_Container], *, at_root: bool) -> list[_Container]:
    kept: list[_Container] = []
    for node in nodes:
        if node.message is not None or (at_root and len(node.children) > 1):
            kept.append(node)
        else:
            kept.extend(node.children)
    return kept


def _group_by_subject(roots: list[_Container]) -> list[_Container]:
    """Step 5: merge the trees of subject-linked messages."""
    root_of = {node: root for root in roots for node in _postorder([root])}
    joins = _DisjointSet()
    for a, b in _subject_links(root_of):
        joins.union(root_of[a], root_of[b])
    groups: dict[_Container, list[_Container]] = {}
    for root in roots:
        groups.setdefault(joins.find(root), []).append(root)
    merged = []
    for members in groups.values():
        tree = members[0]
        for other in members[1:]:
            tree = _merge(tree, other)
        merged.append(tree)
    return merged


def _subject_links(containers: Iterable[_Container]) -> Iterator[tuple[_Container, _Container]]:
    """Pairs linked by the subject fallback: each orphan with its subject's window."""
    buckets: dict[str, list[tuple[datetime, _Container]]] = {}
    for node in containers:
        message = node.message
        if message is not None and message.date is not None and message.subject_key:
            buckets.setdefault(message.subject_key, []).append((message.date, node))
    for bucket in buckets.values():
        bucket.sort(key=lambda item: item[0])
        dates = [date for date, _ in bucket]
        for date, node in bucket:
            if _is_orphan(node):
                low = bisect_left(dates, date - SUBJECT_WINDOW)
                high = bisect_right(dates, date + SUBJECT_WINDOW)
                yield from ((node, other) for _, other in bucket[low:high] if other is not node)


def _is_orphan(node: _Container) -> bool:
    return node.message is not None and node.message.is_subject_orphan


def _merge(a: _Container, b: _Container) -> _Container:
    """Join two roots as JWZ step 5 does; returns the new root."""
    if a.message is None and b.message is None:
        for child in list(b.children):
            _attach(child, a)
        return a
    for parent, child in ((a, b), (b, a)):
        if parent.message is None or (_is_reply(child) and not _is_reply(parent)):
            _attach(child, parent)
            return parent
    root = _Container()
    _attach(a, root)
    _attach(b, root)
    return root


def _is_reply(node: _Container) -> bool:
    return node.message is not None and is_reply_subject(node.message.subject)


def _freeze(roots: list[_Container]) -> list[ThreadNode]:
    """Step 6 and the immutable result: children and roots sorted by earliest date, key."""
    frozen: dict[_Container, tuple[SortKey, ThreadNode]] = {}
    for node in _postorder(roots):
        children = sorted((frozen[child] for child in node.children), key=lambda i: i[0])
        own = _own_sort_key(node)
        sort_key = min([own, *(item[0] for item in children)])
        key = None if node.message is None else node.message.key
        frozen[node] = sort_key, ThreadNode(key, tuple(item[1] for item in children))
    return [item[1] for item in sorted((frozen[root] for root in roots), key=lambda i: i[0])]


def _own_sort_key(node: _Container) -> SortKey:
    if node.message is None:
        return UNDATED, "\uffff"
    date = node.message.date
    return (UNDATED if date is None else date.timestamp()), node.message.key
