"""Intent detection from keyword cues, cheap enough to run on every inbound message.

The customer's text is reduced to a set of cues (:mod:`core.cues`), and an ordered list of
rules over those cues names one of the 27 Bitext intents. :data:`RULES` is read top to bottom
and the first rule whose cues are present wins. Rules for routine topics worded like urgent
ones (cancel a *newsletter*, change an *account*, *cancellation fee*) come first; then the
urgent rules (payment problem, cancel or change an order, change an address), ahead of
everything else so that an ambiguous message errs towards urgent. The rule walk is memoised
per cue set.

Rules are written against general patterns of customer phrasing, not against rows of the data
sets they are checked on (``benchmarks/priority_detection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.cues import MEMO_LIMIT, NO_CUES, C, Cue, clear_word_memo, extract_cues

OTHER: Final = "other"

INTENTS: Final[tuple[str, ...]] = (
    "cancel_order", "change_order", "change_shipping_address", "check_cancellation_fee",
    "check_invoice", "check_payment_methods", "check_refund_policy", "complaint",
    "contact_customer_service", "contact_human_agent", "create_account", "delete_account",
    "delivery_options", "delivery_period", "edit_account", "get_invoice", "get_refund",
    "newsletter_subscription", "payment_issue", "place_order", "recover_password",
    "registration_problems", "review", "set_up_shipping_address", "switch_account",
    "track_order", "track_refund",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    """Names ``intent`` when the message has every cue of ``all_of``, at least one cue of
    ``any_of`` (if given) and none of ``none_of``."""

    intent: str
    all_of: Cue = NO_CUES
    any_of: Cue = NO_CUES
    none_of: Cue = NO_CUES


# Read top to bottom; the first rule that holds names the intent.
_PAYING = C.PAY | C.CARD | C.CHARGE
_CANCELLING = C.CANCEL | C.CANCELLED | C.TERMINATE | C.EXIT
_EDITING = C.CHANGE | C.SWAP | C.ADD | C.REMOVE
_SHIPPING = C.SHIP | C.PARCEL
_ORDERED = C.ORDER | C.ITEM
_ORDER_ID: Final = int(C.ORDER_ID)  # a plain int: see the hot-path note in core.cues
RULES: Final[tuple[Rule, ...]] = (
    # Routine topics worded like urgent ones ("cancellation fee", "cancel my newsletter",
    # "change my account email", "set up a new address"): they come first.
    Rule("check_cancellation_fee", C.FEE, any_of=_CANCELLING),
    Rule("check_cancellation_fee", C.POLICY, any_of=_CANCELLING),
    Rule(
        "check_cancellation_fee",
        C.CHARGE,
        any_of=C.CANCEL | C.TERMINATE | C.EXIT,
        none_of=C.PROBLEM | C.BLOCKED,
    ),
    Rule("newsletter_subscription", any_of=C.NEWSLETTER),
    Rule("newsletter_subscription", C.SUBSCRIBE, none_of=C.PLAN | C.ACCOUNT),
    Rule("newsletter_subscription", C.MAIL | C.STOP),
    Rule("recover_password", any_of=C.PASSWORD),
    Rule("recover_password", C.LOGIN, any_of=C.BLOCKED | C.PROBLEM | C.FORGOT),
    Rule("recover_password", C.FORGOT | C.ACCOUNT, none_of=C.ORDER),
    Rule("registration_problems", C.REGISTER, any_of=C.PROBLEM | C.BLOCKED),
    Rule("registration_problems", C.CREATE | C.ACCOUNT, any_of=C.PROBLEM | C.BLOCKED),
    Rule("registration_problems", C.REGISTER, any_of=C.NOT_YET | C.MAIL, none_of=C.ACCOUNT),
    Rule("review", any_of=C.REVIEW),
    Rule(
        "delete_account",
        C.ACCOUNT,
        any_of=C.CANCEL | C.REMOVE | C.CLOSE | C.TERMINATE,
        none_of=C.ORDER | C.PAY,
    ),
    Rule("switch_account", any_of=C.SWITCH_TO | C.UPGRADE, none_of=_ORDERED | C.ADDRESS),
    Rule("switch_account", C.SWAP, any_of=C.PLAN | C.TIER, none_of=_ORDERED),
    Rule("switch_account", C.ACCOUNT, any_of=C.SWAP | C.USE, none_of=C.ORDER | C.PERSONAL),
    Rule(
        "edit_account",
        C.CHANGE,
        any_of=C.ACCOUNT | C.PERSONAL,
        none_of=_ORDERED | _SHIPPING | C.ADDRESS | _PAYING | C.INVOICE,
    ),
    Rule(
        "set_up_shipping_address",
        C.ADDRESS,
        any_of=C.SET_UP | C.ADD | C.VALID,
        none_of=C.CHANGE | C.WRONG | C.FORGOT,
    ),
    # Urgent: a payment that failed, an order to cancel or change, an address to change.
    Rule("payment_issue", C.PROBLEM, any_of=_PAYING, none_of=C.REFUND),
    Rule("payment_issue", C.CANCELLED, any_of=C.CHARGE, none_of=C.REFUND),
    Rule("payment_issue", any_of=C.BLOCKED | C.NOT, all_of=C.PAY, none_of=C.REFUND),
    Rule("payment_issue", any_of=C.BLOCKED | C.NOT, all_of=C.CARD, none_of=C.REFUND),
    Rule("payment_issue", any_of=C.BLOCKED | C.NOT, all_of=C.CHARGE, none_of=C.REFUND),
    Rule("check_payment_methods", C.METHOD, any_of=C.PAY | C.CARD),
    Rule(
        "check_payment_methods",
        C.QUESTION,
        any_of=C.PAY | C.CARD,
        none_of=C.ORDER | C.REFUND | C.MONEY,
    ),
    Rule("change_shipping_address", any_of=C.ADDRESS),
    Rule(
        "change_shipping_address",
        C.INSTEAD,
        any_of=_SHIPPING | C.DEST,
        none_of=C.SHIP_OPTION | C.ITEM,
    ),
    Rule("change_shipping_address", C.CHANGE | C.WHERE, any_of=_SHIPPING),
    Rule(
        "change_shipping_address",
        C.DEST,
        any_of=C.NEW | C.WRONG | C.CHANGE | _SHIPPING,
        none_of=C.ITEM | C.SHIP_OPTION,
    ),
    Rule("cancel_order", any_of=C.CANCEL),
    Rule("cancel_order", C.CANCELLED, none_of=C.REFUND),
    Rule("cancel_order", C.UNWANT, none_of=C.REFUND | C.ACCOUNT | C.HUMAN | C.BOT),
    Rule("cancel_order", C.STOP, any_of=_ORDERED | _SHIPPING),
    Rule("cancel_order", C.EXIT, any_of=_ORDERED),
    Rule("change_order", C.REMOVE | C.FROM, any_of=C.ORDER),
    Rule("cancel_order", C.REMOVE, any_of=C.ORDER, none_of=C.ITEM),
    Rule(
        "change_order",
        C.ORDER,
        any_of=_EDITING | C.FORGOT | C.INSTEAD,
        none_of=C.REFUND | C.INVOICE,
    ),
    Rule(
        "change_order",
        any_of=_EDITING,
        none_of=C.ACCOUNT | C.PERSONAL | C.REFUND | C.INVOICE | C.TRACK,
    ),
    Rule(
        "change_order",
        C.ITEM,
        any_of=C.NEW | C.WRONG | C.INSTEAD,
        none_of=C.ARRIVE | C.REFUND | C.RETURN,
    ),
    # "a mistake in my order" (but "you sent the wrong order" is a complaint or a return).
    Rule(
        "change_order",
        C.ORDER | C.WRONG,
        none_of=C.ARRIVE | C.REFUND | C.RETURN | _SHIPPING | C.GET_DOCUMENT,
    ),
    Rule("payment_issue", C.MONEY, any_of=C.BLOCKED | C.PROBLEM | C.CHARGE, none_of=C.REFUND),
    # Follow-ups and escalations. A question about *my* refund is a follow-up, not policy.
    Rule("check_refund_policy", C.REFUND, any_of=C.POLICY | C.CONDITION),
    Rule("check_refund_policy", C.REFUND | C.LONG, none_of=C.MY),
    Rule(
        "track_refund",
        C.REFUND,
        any_of=C.TRACK | C.WHERE | C.NOT_YET | C.WAIT | C.NEWS | C.WHEN | C.LONG,
    ),
    Rule("check_refund_policy", C.RETURN, any_of=C.POLICY | C.CONDITION | C.LONG | C.TIME),
    Rule("get_refund", any_of=C.REFUND | C.RETURN),
    Rule("payment_issue", any_of=C.PAY | C.CHARGE, none_of=C.INVOICE | _SHIPPING),
    Rule("complaint", any_of=C.COMPLAINT),
    Rule("contact_human_agent", any_of=C.HUMAN | C.BOT),
    Rule(
        "check_invoice",
        C.INVOICE,
        any_of=C.CHECK | C.TRACK | C.WHERE,
        none_of=C.GET_DOCUMENT | C.MAIL,
    ),
    Rule("get_invoice", any_of=C.INVOICE),
    Rule("contact_customer_service", any_of=C.SERVICE_DESK),
    Rule("contact_customer_service", C.CONTACT | C.SUPPORT),
    Rule("track_order", any_of=C.TRACK | C.WHERE | C.NOT_YET | C.NEWS, none_of=C.ACCOUNT),
    # "When will order 12345 arrive?" is about one order: a tracking request.
    Rule("track_order", C.ORDER_ID, any_of=C.WHEN | C.LONG | C.ARRIVE | C.WAIT | C.TIME),
    Rule("delivery_period", any_of=C.WHEN | C.LONG | C.ARRIVE | C.WAIT, none_of=C.SHIP_OPTION),
    Rule("delivery_period", C.TIME, any_of=_SHIPPING | C.ORDER | C.ITEM),
    # Routine requests.
    Rule("create_account", C.ACCOUNT, any_of=C.CREATE | C.NEW | C.REGISTER | C.SET_UP | C.TIER),
    Rule("create_account", C.REGISTER | C.CREATE),
    Rule("registration_problems", any_of=C.REGISTER),
    Rule("edit_account", any_of=C.ACCOUNT | C.PERSONAL),
    Rule("delivery_options", C.FROM, any_of=C.BUY | C.PLACE | C.ORDER, none_of=C.YOUR | C.ITEM),
    Rule("delivery_options", any_of=C.SHIP | C.SHIP_OPTION),
    Rule("place_order", any_of=C.BUY | C.PLACE),
    Rule("place_order", C.CREATE | C.ORDER),
    Rule("place_order", C.ORDER | C.ITEM, none_of=C.MY),
    Rule("track_order", any_of=C.ORDER | C.PARCEL),
    Rule("contact_customer_service", any_of=C.CONTACT),
)

_COMPILED_RULES: Final = tuple(
    (int(rule.all_of), int(rule.any_of), int(rule.none_of), rule.intent) for rule in RULES
)


# Messages share few distinct cue sets (under a thousand over the whole Bitext file), so the
# rule walk is memoised per set; the cap only bounds memory.
_intent_memo: dict[int, str] = {}


def intent_of_cues(cues: int) -> str:
    """The intent of the first rule in :data:`RULES` that ``cues`` satisfies, else ``"other"``."""
    intent = _intent_memo.get(cues)
    if intent is None:
        intent = _first_matching_rule(cues)
        if len(_intent_memo) >= MEMO_LIMIT:
            _intent_memo.clear()
        _intent_memo[cues] = intent
    return intent


def _first_matching_rule(cues: int) -> str:
    for all_of, any_of, none_of, intent in _COMPILED_RULES:
        if cues & all_of == all_of and (not any_of or cues & any_of) and not cues & none_of:
            return intent
    return OTHER


def detect_intent(lowered: str, *, has_order_id: bool = False) -> str:
    """The intent of a lower-cased customer message: one of :data:`INTENTS` or ``"other"``."""
    cues = extract_cues(lowered)
    if has_order_id:
        cues |= _ORDER_ID  # set by the caller when the text carries an order id
    return intent_of_cues(cues)


def clear_memos() -> None:
    """Forget every memoised word and cue set (benchmarks use it to measure a cold start)."""
    clear_word_memo()
    _intent_memo.clear()
