"""Cues: the concepts a customer's words signal (CANCEL, ORDER, ADDRESS, PROBLEM...).

A message is reduced to the union of its words' cues (an int of :class:`Cue` flags):

1. Words are split out of the lower-cased text with one precompiled regex. A word's cues come
   from a memo; a word not seen before is classified once by ``_CUE_PATTERN`` (one named
   group per cue, typo-tolerant stems such as ``canc\\w*``), else by a one-edit typo lookup
   against distinctive words ("adfress" is an address), else as two glued words ("tocancel"),
   and remembered. CPython's regex engine tries every branch of a large alternation at every
   word start, 10-15 µs a message; the memo makes it one dict lookup a word.
2. Two-word phrases ("set up", "money back", "don't send", "have got to") replace the cues of
   both their words, so "sign up" is not read as a sign plus an up.
3. Runs of non-ASCII text are scanned for Chinese keywords (取消, 退款, 改地址 ...).

:mod:`core.intents` turns a cue set into an intent.
"""

from __future__ import annotations

import re
from enum import IntFlag, auto
from typing import Final


class Cue(IntFlag):
    """A concept a word can signal. A message's cues are the union over its words."""

    CANCEL = auto()  # cancel, call off, scrap
    CANCELLED = auto()  # "cancelled": a request ("I want it cancelled") or a past fact
    UNWANT = auto()  # don't want, no longer, anymore, changed my mind
    STOP = auto()  # stop, hold
    CHANGE = auto()  # change, modify, edit, update, correct, fix
    SWAP = auto()  # swap, switch, replace, exchange
    SWITCH_TO = auto()  # "change to", "switch to", "move to" (another account type)
    ADD = auto()
    REMOVE = auto()  # remove, delete, get rid
    CLOSE = auto()  # close, deactivate
    TERMINATE = auto()  # termination (of a contract or account)
    EXIT = auto()  # early exit, withdrawal
    WRONG = auto()  # wrong, mistake, typo, old, moved
    CREATE = auto()  # create, open, make
    NEW = auto()  # new, another, second, different
    SET_UP = auto()  # set up, enter, submit, save
    VALID = auto()
    USE = auto()
    UPGRADE = auto()  # upgrade, downgrade
    BUY = auto()  # buy, purchase, shop, "to order"
    PLACE = auto()  # place (an order)
    FROM = auto()
    YOUR = auto()  # your, you: the shop, not a place
    MY = auto()  # my, our: an existing order rather than a new one
    INSTEAD = auto()  # instead, redirect
    DEST = auto()  # home, office: a destination without the word address
    ORDER = auto()
    ITEM = auto()  # item, product, size, colour
    PARCEL = auto()  # package, parcel, shipment
    SHIP = auto()  # ship, delivery, courier
    SHIP_OPTION = auto()  # express, international, pick up
    ADDRESS = auto()
    TRACK = auto()  # track, status, eta, locate
    WHERE = auto()
    NOT_YET = auto()  # yet, still, haven't, never
    WAIT = auto()  # waiting, expect, processed
    NEWS = auto()  # news, any update
    ARRIVE = auto()  # arrive, receive, got
    WHEN = auto()  # when, how soon
    LONG = auto()  # how long, usually, take
    TIME = auto()  # time, period, days
    PAY = auto()  # pay, payment, checkout, transaction
    CARD = auto()  # card, visa, paypal
    CHARGE = auto()  # charge, billed
    FEE = auto()  # fee, penalty, cost
    METHOD = auto()  # method, option, accept, available
    QUESTION = auto()  # can, could, possible: asking what is allowed
    PROBLEM = auto()  # problem, error, failed, declined
    BLOCKED = auto()  # can't, won't, doesn't, unable
    NOT = auto()  # not, no (but not "do not know")
    MONEY = auto()
    BACK = auto()
    REFUND = auto()  # refund, reimbursement, rebate, money back
    RETURN = auto()
    POLICY = auto()  # policy, guarantee, terms
    CONDITION = auto()  # in which cases, situations, if
    INVOICE = auto()  # invoice, bill, receipt
    GET_DOCUMENT = auto()  # download, send, copy, get
    ACCOUNT = auto()  # account, profile, user
    TIER = auto()  # premium, gold, free ...
    PLAN = auto()  # plan, contract, membership
    PERSONAL = auto()  # name, email, phone, details
    PASSWORD = auto()  # password, pin, key
    LOGIN = auto()
    FORGOT = auto()  # forgot, lost, reset, recover, locked
    REGISTER = auto()  # register, sign up
    NEWSLETTER = auto()  # newsletter, unsubscribe, promo emails
    SUBSCRIBE = auto()
    MAIL = auto()
    HUMAN = auto()  # human, agent, person, operator
    BOT = auto()
    CUSTOMER = auto()
    SUPPORT = auto()  # service, support, care: with CUSTOMER makes SERVICE_DESK
    SERVICE_DESK = auto()  # customer service, call centre, hotline
    CONTACT = auto()  # contact, call, reach
    COMPLAINT = auto()  # complain, claim, unacceptable, worst
    REVIEW = auto()  # review, feedback, opinion, rating
    CHECK = auto()  # check, see, look, find, view
    ORDER_ID = auto()  # set by the caller when the message carries an order id


C = Cue
NO_CUES: Final = Cue(0)
# Typo-tolerant stems for each cue, matched against whole lower-cased words. A word takes the
# cues of the first group that matches it; a group name that joins two cues with "__" gives the
# word both (a purchase is an ORDER and a way to BUY). Misspellings these stems miss are caught
# by the one-edit fallback on _TYPO_TARGETS below.
_WORD_CUES: Final[dict[str, str]] = {
    "CANCELLED": r"cance?ll?ed",
    "CANCEL": r"\w{0,2}ca[a-z]?nc[a-z]*|cancl\w*|cacnel\w*|acncel\w*|cansel\w*|abort\w*"
    r"|revok\w*|annul\w*|undo|kill|scrap|void",
    "UNWANT": r"anymore|mind|regret\w*",
    "STOP": r"stop\w*|halt|hold",
    "CHANGE": r"chang\w*|chnag\w*|cahng\w*|modif\w*|edit\w*|edt|edi|updat\w*|correct\w*"
    r"|cirrect\w*|amend\w*|alter|altering|fix\w*|adjust\w*|revis\w*|increas\w*|decreas\w*"
    r"|reduc\w*",
    "SWAP": r"swap\w*|switch\w*|replac\w*|exchang\w*",
    "ADD": r"add|ad|adding|added|include|more",
    "REMOVE": r"remov\w*|delet\w*|deleet\w*|edlete|eras\w*|rid|off",
    "CLOSE": r"clos\w*|deactivat\w*|shut",
    "TERMINATE": r"\w*rminat\w*",
    "EXIT": r"\w*exit\w*|withdraw\w*|early|earl|eartly|eaqrly",
    "WRONG": r"wrong|mistake\w*|typo\w*|incorrect\w*|misspel\w*|old|outdated|moved|moving"
    r"|relocat\w*|missing|incomplete",
    "CREATE": r"creat\w*|open\w*|openin|opehing|poen|make|making",
    "NEW": r"new|nw|enw|another|other|else|second|secondary|additional|extra|different"
    r"|alternative|bigger|smaller|larger",
    "SET_UP": r"set|sset|srt|est|setting|setup|enter\w*|submit\w*|save|saving|input",
    "VALID": r"valid|invalid|validat\w*|verif\w*",
    "USE": r"use|using|suing",
    "UPGRADE": r"upgrad\w*|downgrad\w*",
    "BUY__ORDER": r"ordering|purch\w*|purhase|puchase",
    "BUY": r"buy|buying|acquir\w*|shop|shopping|shopa|earn|earning",
    "PLACE": r"place|placing",
    "FROM": r"from|frolm|frm|rfom",
    "YOUR": r"your|ur|you|yours|ya|u|yor",
    "INSTEAD": r"instead|redirect\w*|re-?rout\w*",
    "DEST": r"home|office|house|flat|work|city|town|neighbou?r|parents|friend['’]?s"
    r"|mom['’]?s|mum['’]?s|dad['’]?s|hotel|school|locker|somewhere|elsewhere|recipient",
    "ORDER": r"orders?|ordered|ordr\w*|oder\w*|ordedr|roder|orfer|oredr|orderr|bought",
    "ITEM": r"items?|products?|prodcuts?|articles?|aticle|aeticle|afticle|aritcle|articld|things?"
    r"|stuff|size|colou?r|quantity|qty|model|something",
    "PARCEL__SHIP": r"shipments?",
    "PARCEL": r"packages?|parcels?|pkg",
    "SHIP__TRACK": r"shipped|dispatched|delivered",
    "SHIP": r"ship|ships|shipp\w*|shiping|shippinh|shpi|hsipping|u*deliv\w*|delivr\w*|delikv\w*"
    r"|deilver\w*|delivey\w*|courier\w*|dispatch\w*|carrier\w*|postage",
    "SHIP_OPTION": r"express|overnight|international\w*|abroad|worldwide|pickup|collect\w*",
    "ADDRESS": r"\w*a[a-z]?d+[a-z]?r+[es]+\w*|adres\w*|addr|zip|zipcode|postcode|postal"
    r"|street|apartment|apt|suite",
    "TRACK": r"track\w*|trace|locat\w*|loxate|status|eta|whereabouts",
    "WHERE": r"where|where['’]?s|whereis",
    "NOT_YET": r"yet|still|never|hasn['’]?t|haven['’]?t",
    "WAIT": r"wait\w*|wating|waitung|waitnig|expect\w*|xepect|process\w*|prcoessed|approv\w*",
    "NEWS": r"news|updates",
    "ARRIVE": r"arriv\w*|arival|receiv\w*|recei?ve\w*|recieve\w*|got|gotten|came",
    "WHEN": r"when|soon",
    "LONG__METHOD": r"takes?",
    "LONG": r"long|usually|normally|typically|generally|taking|took",
    "TIME": r"time|timeframe|period\w*|days?|weeks?|weekend|christmas|monday|tuesday"
    r"|wednesday|thursday|friday|saturday|sunday",
    "PAY": r"pay|paid|paying|payed|payment\w*|paymnt\w*|paymet\w*|paiment\w*|poayment\w*"
    r"|paymnet\w*|pament\w*|pymnt|checkout|transaction\w*|cash|instal+ments?|bank",
    "CARD": r"cards?|visa|mastercard|amex|debit|credit|paypal|applepay|gpay|googlepay|klarna"
    r"|afterpay|alipay|crypto\w*|bitcoin",
    "ITEM__CHARGE": r"charger|chargers",
    "CHARGE": r"c\w?harg\w*|chareg\w*|billed|billing|overcharg\w*|deduct\w*|debited",
    "FEE": r"fees?|fes|fe|fere|penalt\w*|pealt\w*|costs?",
    "METHOD": r"methods?|mehods|methds|options?|potions|modalit\w*|accept\w*|acceted|acecpted"
    r"|cacepted|uaccept|availab\w*|avaialble|allowed|ways|types|kinds",
    "QUESTION": r"can|could|possible|posible",
    "PROBLEM": r"problem\w*|probems|proboem|preoblems|issue\w*|isue|error\w*|eror\w*|trouble\w*"
    r"|fail\w*|declin\w*|reject\w*|bounc\w*|broke\w*|bug\w*|glitch\w*|stuck|pending|unpaid"
    r"|denied|twice|double\w*|duplicat\w*|refus\w*|unsuccessful|crash\w*|froze\w*|freez\w*"
    r"|timeout|blocked|flagged|unauthori[sz]ed|fraud\w*",
    "MY": r"my|mine|our|current|existing",
    "BLOCKED": r"can['’]?t|cannot|couldn['’]?t|unable|won['’]?t|wouldn['’]?t|doesn['’]?t"
    r"|didn['’]?t|isn['’]?t|aren['’]?t|wasn['’]?t|none",
    "NOT": r"not|no",
    "MONEY": r"money|moneys|mony",
    "BACK": r"back|bak",
    "REFUND": r"refund\w*|refun|reufnd\w*|erfund\w*|reimb\w*|reinb\w*|erimb\w*|reomb\w*"
    r"|rebat\w*|reabt\w*|erbate|restitu\w*|compen\w*|compes\w*|comens\w*",
    "RETURN": r"return\w*",
    "POLICY": r"polic\w*|guarantee\w*|garantee|rules|terms|conditions|eligib\w*",
    "CONDITION": r"cases?|acses|caess|cass|situations?|circumstances?|if|within",
    "INVOICE__GET_DOCUMENT": r"vat",
    "INVOICE": r"invoi\w*|invoce|inovice|inv|bills?|bil|biull|receipts?|reciepts?",
    "GET_DOCUMENT": r"download\w*|dwnload\w*|send|sent|resend|srnd|copy|copies|pdf|print\w*"
    r"|get|getting|egt|obtain\w*",
    "ACCOUNT": r"\w*a[cz]{1,3}o[uniy]{1,3}[nm]?t\w*|acct|profile\w*|probile|rpofile|prfile"
    r"|prfoile|user|usef",
    "TIER": r"platinum|gold|freemium|premium|pro|standard|free|basic|business|plus|vip",
    "PLAN": r"plan|plans|contract\w*",
    "PLAN__ACCOUNT": r"membership",
    "PERSONAL__MAIL": r"e-?mails?",
    "PERSONAL": r"name|details?|ddtails|info|information|data|personal|username",
    "PERSONAL__SERVICE_DESK": r"phone",
    "MAIL": r"mail|e-?mailing|mailed",
    "PASSWORD": r"passw\w*|pasword|pssword|paswd|padsword|pwd|pass|pin|passcode|key|credentials",
    "LOGIN": r"log|logging|logon|signin",
    "LOGIN__ACCOUNT": r"login",
    "FORGOT": r"forg[eo]t\w*|lost|reset\w*|rset|recover\w*|restor\w*|retriev\w*|reteiev\w*"
    r"|locked|lockout",
    "REGISTER__CREATE": r"register|registering",
    "REGISTER": r"regist\w*|rgistration|regstration|signup\w*|sibn",
    "NEWSLETTER": r"newsl\w*|newsleter|mailing|unsubscri\w*|unsuscri\w*|promo\w*|marketing"
    r"|spam|advert\w*",
    "SUBSCRIBE": r"subscri\w*|subnscri\w*",
    "HUMAN": r"human\w*|person|persn|eprson|people|agent\w*|agnet|operator\w*|assistant"
    r"|representative\w*|rep|reps|somebody|sombody|someone|somone|somneone|somenoe"
    r"|staff|manager|supervisor|employee",
    "BOT": r"bot|robot|chatbot|automated",
    "CUSTOMER": r"cust\w*|costumer",
    "SUPPORT": r"serv\w*|esrvice|sevrice|seervice|sefvice|supp\w*|spport|care|assist\w*",
    "SERVICE_DESK": r"helpdesk|hotline|callcenter",
    "CONTACT": r"contact\w*|conttact|reach|touch|call|calling|caling|cal|cll",
    "COMPLAINT": r"complain\w*|complant|claim\w*|clain|coaim|reclam\w*|recla\w*mation|lodg\w*"
    r"|escalat\w*|dissatisf\w*|unacceptabl\w*|disgust\w*|outrag\w*|ridiculous|terribl\w*"
    r"|horribl\w*|awful|worst|furious|angry|unhappy|rude|scam\w*|disappoint\w*|bad|poor"
    r"|unprofessional|joke|fed|appalling|pathetic|useless|shocking|sucks|nightmare|ripoff"
    r"|incompetent|lousy|dreadful|upset|frustrat\w*|report\w*",
    "REVIEW": r"review\w*|feedb\w*|ffeedback|feecback|opinion\w*|comment\w*|rate|rating\w*"
    r"|testimonial\w*",
    "CHECK": r"check\w*|chec|ceck|chcek|see|seeing|look\w*|view\w*|find\w*|ifind|show\w*",
}

# Words worth correcting a one-letter typo of (an extra, missing, wrong or swapped letter):
# long and distinctive enough that a word one edit away is almost surely a misspelling. Their
# cues come from _WORD_CUES. Also the parts a glued pair of words ("tocancel") is split into.
_TYPO_TARGETS: Final = (
    "cancel", "canceling", "cancelling", "cancellation", "refund", "refunds", "reimbursement",
    "reimbursements", "reimbursed", "rebate", "rebates", "restitution", "compensation",
    "compensations", "address", "addresses", "shipping", "shipment", "delivery", "deliveries",
    "package", "parcel", "payment", "payments", "invoice", "invoices", "account", "accounts",
    "profile", "password", "complaint", "complain", "reclamation", "newsletter", "customer",
    "service", "support", "feedback", "review", "someone", "somebody", "person", "assistant",
    "operator", "representative", "human", "termination", "penalty", "penalties", "charge",
    "charges", "status", "tracking", "modify", "modifying", "update", "updating", "correct",
    "purchase", "product", "products", "article", "articles", "items", "orders", "signup",
    "registration", "register", "create", "creating", "delete", "subscribe", "unsubscribe",
    "methods", "options", "available", "accepted", "policy", "situations", "receive",
    "arrive", "expect", "waiting", "processed", "switch", "premium", "platinum", "freemium",
    "standard", "withdrawal", "business", "contact", "recover", "restore", "retrieve", "forgot",
    "download", "error", "errors", "problem", "problems", "issues", "trouble", "declined",
    "failed",
)  # fmt: skip
# Short words a glued pair may start or end with besides the targets ("tocancel", "iswap").
_GLUE_WORDS: Final = frozenset({"i", "u", "a", "to", "the", "my", "an", "of", "ur", "me", "for"})

# Two-word phrases, grouped like _WORD_CUES; a phrase's cues replace those of both its words.
# FILLER phrases carry no cue: "I have got to ...", "where do I ...", "I don't know how to ...".
_PHRASES: Final[dict[str, str]] = {
    "FILLER": "have got|where do|where to|where should|where would|can't find|cant find"
    "|cannot find|can't see|cannot see|not know|not sure|not understand|me more",
    "QUESTION": "where can|where could",
    "CANCEL": "call off|back out|backing out|don't send|dont send|not send|don't ship|dont ship"
    "|not ship|don't process|dont process|not process|don't deliver|dont deliver|not deliver"
    "|don't dispatch|not dispatch",
    "UNWANT": "don't want|dont want|not want|don't need|dont need|no longer|any longer",
    "REMOVE": "out of",
    "SWITCH_TO__CHANGE": "change to|changing to",
    "SWITCH_TO__SWAP": "switch to|switching to",
    "SWITCH_TO": "move to|move me",
    "BUY__ORDER": "to order|i order|an order",
    "SET_UP": "set up|setting up",
    "REGISTER__CREATE": "sign up|signing up",
    "LOGIN": "sign in|log in",
    "BLOCKED": "not able",
    "PROBLEM": "went wrong|goes wrong|gone wrong",
    "CHARGE": "was taken|been taken|taken from|took my",
    "REFUND": "money back",
    "LONG": "how long|how fast|how quickly",
    "WHEN": "how soon",
    "WAIT": "been sent|been issued",
    "NEWS": "any update|any updates",
    "TRACK": "out for|its way",
    "ARRIVE": "show up|shows up|shown up|showed up|get here|gets here|be here",
    "DEST": "my place|new place|old place",
    "ADDRESS": "shipping details|shipping info|shipping information|delivery details"
    "|delivery info|delivery information",
    "PERSONAL__MAIL": "email address|e-mail address|mail address",
    "ITEM": "gift card",
    "SWITCH_TO__ACCOUNT": "account type|account level",
    "SHIP_OPTION": "next day|same day|pick up",
    "HUMAN": "live chat|live agent",
    "SERVICE_DESK": "call center|call centre|support email|support team|support number"
    "|support phone|support line|support hours|contact support|opening hours|business hours"
    "|office hours|working hours|your hours",
}

# Chinese keywords, scanned in runs of non-ASCII text (CJK has no spaces to split words on).
_CHINESE_CUES: Final[dict[str, str]] = {
    "CANCEL": "取消|退订单",
    "UNWANT": "不要了|不想要",
    "NOT_YET": "还没|没有收到|没到",
    "ARRIVE": "收到",
    "WAIT": "到账",
    "ORDER": "订单|单子",
    "CHANGE": "修改|更改|改",
    "SWAP": "换",
    "ITEM": "商品|颜色|尺码|数量",
    "ADDRESS": "地址",
    "PAY__PROBLEM": "付不了|付不出|付不上",
    "PAY": "付款|支付|付钱|扣款|扣钱|刷卡",
    "CARD": "卡",
    "REMOVE": "去掉|删除|删掉|拿掉",
    "PROBLEM": "失败|错误|问题|不了|不能|无法|异常|没成功|不成功",
    "WRONG": "错",
    "METHOD": "方式",
    "REFUND": "退款|退钱",
    "WHERE": "到哪|哪里|在哪",
    "PARCEL": "物流|快递|包裹",
    "TRACK": "发货",
    "WHEN": "什么时候|多久",
    "HUMAN": "人工|真人",
    "SERVICE_DESK": "客服",
    "COMPLAINT": "投诉",
    "INVOICE": "发票",
    "PASSWORD": "密码",
    "REGISTER": "注册",
    "ACCOUNT": "账号|账户|帐号|帐户",
    "REVIEW": "评价",
}


def _cues_named(group_name: str) -> int:
    cues = Cue(0)
    for part in group_name.split("__"):
        if part != "FILLER":
            cues |= Cue[part]
    return int(cues)


def _compile_groups(
    groups: dict[str, str], prefix: str = ""
) -> tuple[re.Pattern[str], dict[str, int]]:
    """One alternation with a named group per entry, and the cue bits of each group."""
    pattern = "|".join(f"(?P<{name}>{alternatives})" for name, alternatives in groups.items())
    return re.compile(f"{prefix}(?:{pattern})"), {name: _cues_named(name) for name in groups}


_CUE_PATTERN, _CUE_BITS = _compile_groups(_WORD_CUES)
# The lookahead on the keywords' first characters makes every other position fail at once.
_CHINESE_FIRST: Final = sorted(
    {keyword[0] for keywords in _CHINESE_CUES.values() for keyword in keywords.split("|")}
)
_CHINESE_PATTERN, _CHINESE_BITS = _compile_groups(_CHINESE_CUES, f"(?=[{''.join(_CHINESE_FIRST)}])")
_PHRASE_BITS: Final = {
    spelling: _cues_named(name)
    for name, phrases in _PHRASES.items()
    for phrase in phrases.split("|")
    for spelling in (phrase, phrase.replace("'", "’"))
}
_PHRASE_TAILS: Final = frozenset(phrase.split(" ")[1] for phrase in _PHRASE_BITS)
_WORDS: Final = re.compile(r"[a-z]+(?:['’][a-z]+)?|[^\x00-\x7f]+")


def _stem_cues(word: str) -> int:
    match = _CUE_PATTERN.fullmatch(word)
    return _CUE_BITS[match.lastgroup] if match is not None and match.lastgroup else 0


def _deletions(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _typo_index() -> dict[str, int]:
    """Each target and each of its one-letter deletions, mapped to the target's cues."""
    index: dict[str, int] = {}
    for target in _TYPO_TARGETS:
        bits = _stem_cues(target)
        assert bits, f"typo target {target!r} has no cue"
        index[target] = bits
        for deleted in _deletions(target):
            index.setdefault(deleted, bits)
    return index


_TYPO_INDEX: Final = _typo_index()
_MIN_TYPO_LENGTH: Final = 5


def _typo_cues(word: str) -> int:
    """Cues of a target one edit away from ``word`` (symmetric-deletion lookup), else 0."""
    if len(word) < _MIN_TYPO_LENGTH:
        return 0
    bits = _TYPO_INDEX.get(word, 0)
    for deleted in _deletions(word):
        bits = bits or _TYPO_INDEX.get(deleted, 0)
    return bits


def _glued_cues(word: str) -> int:
    """Cues of two words written without a space ("tocancel", "deliveryaddress"), else 0."""
    for split in range(1, len(word)):
        head, tail = word[:split], word[split:]
        if (head in _GLUE_WORDS or head in _TYPO_INDEX) and (
            tail in _GLUE_WORDS or tail in _TYPO_INDEX
        ):
            return _stem_cues(head) | _stem_cues(tail)
    return 0


# Distinct words are few (vocabulary plus typos): the memo is soon warm. Classifying a new word
# costs ~10 µs, so junk input is bounded: words longer than any keyword (or glued pair) carry no
# cue, a message classifies at most _NEW_WORDS_PER_MESSAGE new words (a few ms at worst), and a
# full memo starts afresh rather than refusing the real words that come after the junk.
MEMO_LIMIT: Final = 50_000
_MAX_WORD_LENGTH: Final = 24
_NEW_WORDS_PER_MESSAGE: Final = 100
_memo: dict[str, int] = {}


def _word_cues(word: str) -> int:
    """The cue bits of one lower-cased word not yet in the memo, which it then joins."""
    if len(word) > _MAX_WORD_LENGTH:
        return 0
    bits = _stem_cues(word) or _typo_cues(word) or _glued_cues(word)
    if len(_memo) >= MEMO_LIMIT:
        _memo.clear()
    _memo[word] = bits
    return bits


def _chinese_cues(run: str) -> int:
    bits = 0
    for match in _CHINESE_PATTERN.finditer(run):
        if match.lastgroup:
            bits |= _CHINESE_BITS[match.lastgroup]
    return bits


# Plain ints on the hot path: an int combined with an IntFlag becomes an IntFlag, and every
# later bit operation on it then runs in Python instead of C (10x slower).
_MONEY_BACK: Final = int(C.MONEY | C.BACK)
_REFUND: Final = int(C.REFUND)
_CUSTOMER_SUPPORT: Final = int(C.CUSTOMER | C.SUPPORT)
_SERVICE_DESK: Final = int(C.SERVICE_DESK)


def extract_cues(lowered: str) -> int:
    """The union of the cue bits of a lower-cased message (an int of :class:`Cue` flags)."""
    cues = 0
    previous_word = ""
    previous_bits = 0  # held back one word, in case a phrase replaces it
    new_words_left = _NEW_WORDS_PER_MESSAGE
    memo_get = _memo.get
    for word in _WORDS.findall(lowered):
        if word[0] >= "\x80":
            cues |= previous_bits | _chinese_cues(word)
            previous_word, previous_bits = "", 0
            continue
        bits = memo_get(word)
        if bits is None:
            new_words_left -= 1
            bits = _word_cues(word) if new_words_left >= 0 else 0
        if word in _PHRASE_TAILS:
            phrase_bits = _PHRASE_BITS.get(f"{previous_word} {word}")
            if phrase_bits is not None:
                previous_bits, bits = 0, phrase_bits
        cues |= previous_bits
        previous_word, previous_bits = word, bits
    cues |= previous_bits
    if cues & _MONEY_BACK == _MONEY_BACK:  # "give me back my money"
        cues |= _REFUND
    if cues & _CUSTOMER_SUPPORT == _CUSTOMER_SUPPORT:  # "customer service", "customer care"
        cues |= _SERVICE_DESK
    return cues


def clear_word_memo() -> None:
    """Forget every memoised word (benchmarks use it to measure a cold start)."""
    _memo.clear()
