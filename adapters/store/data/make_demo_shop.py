"""Writes the demo shop's data: ``demo_shop.json`` and ``identities.json`` beside this file.

Run once, from the repository root, whenever the demo data should change::

    python -m adapters.store.data.make_demo_shop

The output is deterministic (one ``random.Random(2026)``), so a run without changes here
rewrites the same files. Everything is made up: names, ``@example.com`` emails, street
addresses, tracking numbers and the channel identities that link people to customers.
Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent
VERSION = "2026-11"
CURRENCY = "USD"
CUSTOMERS = 100
ORDERS = 200
FIRST_ORDER_ID = 100001
OUT_OF_STOCK = 4

# (category, name, description, price in USD)
CATALOGUE = (
    ("electronics", "Aurora Wireless Noise-Cancelling Headphones",
     "Over-ear Bluetooth headphones with active noise cancelling, a 30-hour battery and a "
     "foldable travel case.", 129.99),
    ("electronics", "Pulse True Wireless Earbuds",
     "Bluetooth 5.3 earbuds with a charging case, IPX4 splash resistance and 24 hours of "
     "total playback.", 59.99),
    ("electronics", "Volt 20000 mAh Power Bank",
     "USB-C power bank with 65 W fast charging: charges a laptop once or a phone four times.",
     44.99),
    ("electronics", "Nimbus Smart Speaker",
     "Compact Wi-Fi and Bluetooth speaker with a voice assistant and multi-room pairing.",
     79.00),
    ("electronics", "Lumen 4K Streaming Stick",
     "HDMI streaming stick with 4K HDR, Dolby Vision and a voice remote.", 39.99),
    ("electronics", "Orbit Wireless Charging Pad",
     "15 W Qi wireless charger for phones and earbuds with a non-slip surface.", 24.99),
    ("electronics", "Vector Mechanical Keyboard",
     "Tenkeyless mechanical keyboard with hot-swappable switches and white backlight.", 89.99),
    ("electronics", "Glide Wireless Mouse",
     "Silent-click wireless mouse with USB-C charging and a 4000 DPI sensor.", 29.99),
    ("electronics", "Apex Fitness Smartwatch",
     "Smartwatch with heart-rate and sleep tracking, built-in GPS and a 7-day battery.", 149.00),
    ("electronics", "Snap 1080p Webcam",
     "Full HD webcam with dual microphones and a privacy shutter, plug and play over USB.",
     49.99),
    ("home", "Brew Master Drip Coffee Maker",
     "Programmable 12-cup coffee maker with a glass carafe and a keep-warm plate.", 69.99),
    ("home", "Crisp 5.5 L Air Fryer",
     "Digital air fryer with eight cooking presets and a dishwasher-safe basket.", 99.99),
    ("home", "Everyday Stainless Steel Cookware Set",
     "Ten-piece tri-ply pots and pans with lids, oven-safe to 500 F and induction ready.",
     189.00),
    ("home", "Cloud Memory Foam Pillow",
     "Contoured memory foam pillow with a washable bamboo cover.", 34.99),
    ("home", "Haven Cotton Bath Towel Set",
     "Six 600 GSM cotton towels: two bath towels, two hand towels and two washcloths.", 42.00),
    ("home", "Breeze Tower Fan",
     "36-inch oscillating tower fan with a remote, a sleep timer and three speeds.", 64.99),
    ("home", "Glow LED Desk Lamp",
     "Dimmable LED desk lamp with five color temperatures and a USB charging port.", 32.99),
    ("home", "Pure HEPA Air Purifier",
     "True HEPA air purifier for rooms up to 400 sq ft, with a quiet sleep mode.", 129.00),
    ("home", "Fresh Glass Food Storage Set",
     "Twelve glass containers with leak-proof locking lids, microwave and oven safe.", 38.99),
    ("home", "Robo Vac S2 Robot Vacuum",
     "Robot vacuum with app control, a 120-minute runtime and automatic recharging.", 219.00),
    ("apparel", "Trailrunner Running Shoes",
     "Lightweight running shoes with a breathable mesh upper and a cushioned sole.", 89.00),
    ("apparel", "Classic Crew Neck T-Shirt",
     "Soft organic cotton T-shirt in a regular fit, available in eight colors.", 18.00),
    ("apparel", "Summit Waterproof Rain Jacket",
     "Packable waterproof jacket with sealed seams and an adjustable hood.", 119.00),
    ("apparel", "Denim Slim Fit Jeans",
     "Stretch denim jeans in a slim fit and a dark indigo wash.", 59.00),
    ("apparel", "Merino Wool Crew Socks 3-Pack",
     "Three pairs of breathable, odor-resistant merino wool socks for everyday wear.", 24.00),
    ("apparel", "Cozy Fleece Hoodie",
     "Brushed fleece hoodie with a kangaroo pocket and a lined hood.", 45.00),
    ("apparel", "Urban Canvas Backpack",
     "20 L water-resistant canvas backpack with a padded laptop sleeve.", 54.99),
    ("apparel", "Leather Everyday Belt",
     "Full-grain leather belt with a brushed nickel buckle.", 35.00),
    ("apparel", "Alpine Down Puffer Vest",
     "Lightweight 650-fill down vest that packs into its own pocket.", 98.00),
    ("apparel", "Sunny Polarized Sunglasses",
     "Polarized sunglasses with UV400 protection and a hard case.", 29.99),
    ("beauty", "Hydra Daily Moisturizer SPF 30",
     "Lightweight face moisturizer with hyaluronic acid and broad-spectrum SPF 30.", 26.00),
    ("beauty", "Glow Vitamin C Serum",
     "15% vitamin C face serum that brightens and evens skin tone.", 32.00),
    ("beauty", "Gentle Foaming Face Cleanser",
     "Fragrance-free foaming face cleanser for all skin types.", 14.50),
    ("beauty", "Silk Repair Shampoo",
     "Sulfate-free shampoo with argan oil for dry or damaged hair.", 16.99),
    ("beauty", "Silk Repair Conditioner",
     "Sulfate-free conditioner with argan oil that detangles and smooths hair.", 16.99),
    ("beauty", "Velvet Matte Lipstick",
     "Long-wear matte lipstick available in twelve shades.", 19.00),
    ("beauty", "Lash Lift Volumizing Mascara",
     "Smudge-proof mascara for volume and length.", 21.00),
    ("beauty", "Ionic Pro Hair Dryer",
     "1875 W ionic hair dryer with three heat settings and a concentrator nozzle.", 79.99),
    ("beauty", "Calm Lavender Body Lotion",
     "Shea butter body lotion with lavender oil, 400 ml.", 15.00),
    ("beauty", "Sonic Electric Toothbrush",
     "Rechargeable sonic toothbrush with a two-minute timer and two brush heads.", 49.99),
    ("toys", "Build and Play Brick Set 500 Pieces",
     "Building bricks with wheels, windows and an idea booklet. Ages 5 and up.", 34.99),
    ("toys", "Zoom RC Stunt Car",
     "Remote-control stunt car that flips and spins, with a rechargeable battery. Ages 8 and "
     "up.", 39.99),
    ("toys", "Cuddle Bear Plush",
     "Super-soft 30 cm teddy bear, machine washable. For all ages.", 22.00),
    ("toys", "Galaxy Explorer 1000-Piece Puzzle",
     "1000-piece jigsaw puzzle of the Milky Way. Ages 12 and up.", 19.99),
    ("toys", "Little Chef Wooden Play Kitchen",
     "Wooden play kitchen with an oven, a sink and six accessories. Ages 3 and up.", 129.00),
    ("toys", "Starter Robotics Coding Kit",
     "Build and program a small robot with a free block-coding app. Ages 8 and up.", 69.99),
    ("toys", "Harbor Traders Board Game",
     "Trading and building board game for 2-4 players, about 60 minutes. Ages 10 and up.",
     44.00),
    ("toys", "Magnetic Tiles Set 60 Pieces",
     "Colorful magnetic building tiles for 3D shapes. Ages 3 and up.", 49.99),
    ("toys", "Junior Art Easel",
     "Double-sided art easel with a chalkboard, a whiteboard and a paper roll. Ages 3 and up.",
     59.99),
    ("toys", "Splash Water Blaster 2-Pack",
     "Two pump-action water blasters with a 40-foot range. Ages 6 and up.", 24.99),
)  # fmt: skip

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Sophia", "Lucas", "Mia", "Mason",
    "Isabella", "Logan", "Amelia", "James", "Harper", "Elijah", "Chloe", "Daniel", "Grace",
    "Henry", "Lily", "Samuel", "Zoe", "Owen", "Nora", "Ryan", "Hannah", "Leo", "Aria", "Jack",
    "Mei", "Jun", "Li", "Hui", "Yan", "Priya", "Arjun", "Sofia", "Mateo", "Camila", "Diego",
    "Fatima", "Omar", "Yuki", "Kenji", "Hana", "Minji", "Tomas", "Elena", "Nina",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Lopez",
    "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Lee", "Walker", "Hall",
    "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell",
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Patel",
    "Kim", "Park", "Nguyen", "Tanaka", "Sato", "Rossi", "Muller", "Silva", "Santos",
)  # fmt: skip
# The first customers are named so that the README can introduce them.
FIXED_NAMES = ("Alice Martin", "Wei Zhang", "Bob Johnson")
STREETS = ("Example Street", "Sample Avenue", "Demo Road", "Test Lane", "Placeholder Way")
CITIES = ("Springfield", "Riverside", "Fairview", "Lakewood", "Maple Grove")
# OpenIDs of one official account share their first characters; the rest looks random.
OPENID_PREFIX = "o6_bm"
OPENID_ALPHABET = string.ascii_letters + string.digits + "_-"
CARRIERS = ("UPS", "DHL", "FedEx", "USPS")

# Status weights by an order's age: old orders are mostly delivered, new ones not yet paid.
STATUSES = ("pending_payment", "paid", "processing", "shipped", "delivered", "cancelled",
            "returned")  # fmt: skip
WEIGHTS_OLD = (2, 3, 5, 15, 55, 10, 10)
WEIGHTS_RECENT = (5, 10, 20, 35, 20, 8, 2)
WEIGHTS_NEW = (25, 25, 30, 12, 0, 8, 0)

POLICIES = {
    "returns": (
        "You can return most items within 30 days of delivery for a full refund, as long as "
        "they are unused and in their original packaging. Start a return from your order page "
        "or ask us here, and we email you a prepaid return label. Return shipping is free for "
        "faulty or wrong items; otherwise $5.99 is taken off the refund. Opened beauty products "
        "can only be returned if they are faulty.",
        "大多数商品在签收后 30 天内可退货并全额退款，前提是商品未使用且保留原包装。您可以在订单"
        "页面发起退货，或直接在这里告诉我们，我们会通过邮件发送预付退货运单。商品有质量问题或发错"
        "货时退货运费全免，其他情况将从退款中扣除 5.99 美元。"
        "已开封的美妆产品仅在有质量问题时可退。",
    ),
    "refunds": (
        "Once your return reaches our warehouse we inspect it within 2 business days and refund "
        "the original payment method. Card and PayPal refunds arrive within 5-10 business days; "
        "Alipay and WeChat Pay refunds within 1-3 business days. Paid orders cancelled before "
        "shipping are refunded in full the same way. We email you when the refund is issued.",
        "退货送达仓库后，我们会在 2 个工作日内完成检验，并原路退回您的付款账户。银行卡和 PayPal "
        "退款一般在 5-10 个工作日内到账；支付宝和微信支付退款在 1-3 个工作日内到账。发货前取消的"
        "已付款订单同样全额原路退款。退款发出时我们会发邮件通知您。",
    ),
    "shipping": (
        "Standard shipping takes 3-5 business days and is free on orders over $50 (otherwise "
        "$4.99). Express shipping takes 1-2 business days and costs $9.99. Orders placed before "
        "2 pm ET on a business day ship the same day. We ship with UPS, FedEx, DHL and USPS and "
        "email you the tracking number as soon as your parcel leaves our warehouse. "
        "International orders go with DHL and take 7-14 business days, from $19.99.",
        "标准配送需 3-5 个工作日，订单满 50 美元免运费（否则运费 4.99 美元）。加急配送需 1-2 个"
        "工作日，运费 9.99 美元。工作日美东时间下午 2 点前下单当天发货。我们使用 UPS、FedEx、DHL "
        "和 USPS 发货，包裹出库后会通过邮件发送物流单号。国际订单由 DHL 配送，需 7-14 个工作日，"
        "运费 19.99 美元起。",
    ),
    "payment_methods": (
        "We accept Visa, Mastercard, American Express, PayPal, Apple Pay, Alipay and WeChat "
        "Pay. You are charged when you place the order. If a payment fails, the order waits "
        "48 hours for you to pay again from your order page, then it is cancelled "
        "automatically. All prices are in US dollars.",
        "我们接受 Visa、Mastercard、American Express、PayPal、Apple Pay、支付宝和微信支付。下单"
        "时即扣款。如果付款失败，订单会保留 48 小时，您可以在订单页面重新付款，逾期将自动取消。所有"
        "价格均以美元计价。",
    ),
    "cancellation": (
        "You can cancel an order free of charge until it ships: use Cancel on your order page "
        "or ask us here. Paid orders cancelled before shipping are refunded in full. Once an "
        "order has shipped it can no longer be cancelled; return it within 30 days of delivery "
        "instead, and a $5 restocking fee applies.",
        "订单发货前可免费取消：在订单页面点击“取消订单”，或直接在这里告诉我们。发货前取消的已付款"
        "订单全额退款。订单发货后无法取消，您可以在签收后 30 天内退货，需收取 5 美元的重新上架费。",
    ),
    "account": (
        "Create an account with your email address at checkout or on the Sign up page. Change "
        "your name, addresses and password under My Account > Settings. Forgot your password? "
        "Use Forgot password on the sign-in page and we email you a reset link valid for 1 "
        "hour. To delete your account and personal data, write to privacy@example.com; it is "
        "done within 30 days. We never ask for your password in chat.",
        "您可以在结账时或“注册”页面用邮箱创建账户，在“我的账户 > 设置”中修改姓名、地址和密码。"
        "忘记密码时，请在登录页点击“忘记密码”，我们会发送有效期 1 小时的重置链接。如需注销账户并"
        "删除个人数据，请发邮件至 privacy@example.com，我们会在 30 天内处理。我们绝不会在聊天中"
        "索要您的密码。",
    ),
    "contact": (
        "Live chat is open 24/7: type /human at any time to reach a member of our support team "
        "(during big sales a reply can take up to 30 minutes). Email support@example.com and we "
        "reply within 24 hours. Phone support: +1 555 0100, Monday to Friday, 9 am to 6 pm ET.",
        "在线客服 24 小时全天候服务：随时输入 /human 即可转人工客服"
        "（大促期间回复可能需要 30 分钟）。也可以发邮件至 support@example.com，"
        "我们会在 24 小时内回复。电话客服：+1 555 0100，"
        "周一至周五美东时间上午 9 点至下午 6 点。",
    ),
    "invoices": (
        "We email a PDF invoice when your order ships, and you can download it any time from "
        "your order page. Need a company name or tax ID on it? Add it at checkout, or ask us "
        "within 90 days of the order and we issue a corrected invoice within 2 business days.",
        "订单发货时，我们会通过邮件发送 PDF 发票，您也可以随时在订单页面下载。如需在发票上注明公司"
        "名称或税号，请在结账时填写，或在下单后 90 天内联系我们，我们会在 2 个工作日内重新开具。",
    ),
    "newsletter": (
        "Subscribe at checkout or at the bottom of any page for our weekly newsletter with new "
        "arrivals and members-only deals, and get 10% off your first order. Unsubscribe any "
        "time with the link at the end of every email or under My Account > Notifications; it "
        "takes effect within 48 hours.",
        "在结账时或任意页面底部即可订阅每周新闻邮件，获取新品和会员专享优惠，首单享 9 折。您可以"
        "随时通过每封邮件末尾的链接退订，或在“我的账户 > 通知”中关闭，48 小时内生效。",
    ),
}


def make_products(rng: random.Random) -> list[dict[str, Any]]:
    sold_out = set(rng.sample(range(len(CATALOGUE)), OUT_OF_STOCK))
    return [
        {
            "id": f"P{n + 1:03d}",
            "name": name,
            "category": category,
            "price": price,
            "currency": CURRENCY,
            "stock": 0 if n in sold_out else rng.randint(3, 250),
            "description": description,
        }
        for n, (category, name, description, price) in enumerate(CATALOGUE)
    ]


def make_customers(rng: random.Random) -> list[dict[str, Any]]:
    names = list(FIXED_NAMES)
    while len(names) < CUSTOMERS:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if name not in names:
            names.append(name)
    return [
        {
            "id": f"C{n:03d}",
            "name": name,
            "email": f"c{n:03d}@example.com",
            "address": f"{rng.randint(1, 199)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
        }
        for n, name in enumerate(names, start=1)
    ]


def make_identities(rng: random.Random, customers: list[dict[str, Any]]) -> dict[str, str]:
    """Every customer on Telegram; every other one on the demo gateway; every third on WeChat."""
    identities: dict[str, str] = {}
    for n, customer in enumerate(customers, start=1):
        identities[f"telegram:{1000 + n}"] = customer["id"]
    for n, customer in enumerate(customers, start=1):
        if n % 2 == 1:
            user_id = customer["name"].split()[0].lower()
            if f"webhook:demo:{user_id}" in identities:
                user_id = f"{user_id}{n}"
            identities[f"webhook:demo:{user_id}"] = customer["id"]
    for n, customer in enumerate(customers, start=1):
        if n % 3 == 2:
            tail = "".join(rng.choices(OPENID_ALPHABET, k=28 - len(OPENID_PREFIX)))
            identities[f"wechat:{OPENID_PREFIX}{tail}"] = customer["id"]
    return identities


def tracking_number(rng: random.Random, carrier: str) -> str:
    digits = "".join(rng.choices(string.digits, k=22))
    if carrier == "UPS":
        return (
            "1Z" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=6)) + digits[:10]
        )
    if carrier == "DHL":
        return digits[:10]
    if carrier == "FedEx":
        return digits[:12]
    return "9400" + digits[:18]  # USPS


def make_orders(
    rng: random.Random, customers: list[dict[str, Any]], products: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # Every customer has an order; the other half of the orders go to anyone.
    buyers = rng.sample(customers, len(customers))
    buyers += rng.choices(customers, k=ORDERS - len(customers))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    seconds = sorted(rng.randrange(30 * 24 * 3600) for _ in range(ORDERS))
    orders = []
    for n, (buyer, offset) in enumerate(zip(buyers, seconds, strict=True)):
        created = start + timedelta(seconds=offset)
        age = n / (ORDERS - 1)  # 0 = the oldest order, 1 = the newest
        weights = WEIGHTS_OLD if age < 0.6 else WEIGHTS_RECENT if age < 0.85 else WEIGHTS_NEW
        status = rng.choices(STATUSES, weights)[0]
        count = rng.choices((1, 2, 3), (55, 30, 15))[0]
        items = [
            {
                "product_id": product["id"],
                "name": product["name"],
                "quantity": rng.choices((1, 2, 3), (75, 20, 5))[0],
                "unit_price": product["price"],
            }
            for product in rng.sample(products, count)
        ]
        shipped = status in ("shipped", "delivered")
        carrier = rng.choice(CARRIERS) if shipped else None
        estimate = None
        if status in ("processing", "shipped"):
            estimate = (created + timedelta(days=rng.randint(3, 7))).date().isoformat()
        orders.append(
            {
                "id": str(FIRST_ORDER_ID + n),
                "customer_id": buyer["id"],
                "status": status,
                "items": items,
                "total": round(sum(i["quantity"] * i["unit_price"] for i in items), 2),
                "currency": CURRENCY,
                "payment_status": payment_status(rng, status),
                "carrier": carrier,
                "tracking_number": tracking_number(rng, carrier) if carrier else None,
                "estimated_delivery": estimate,
                "shipping_address": buyer["address"],
                "created_at": created.isoformat().replace("+00:00", "Z"),
            }
        )
    return orders


def payment_status(rng: random.Random, status: str) -> str:
    if status == "pending_payment":  # some tried and failed, the others have not paid yet
        return rng.choices(("pending", "failed"), (75, 25))[0]
    if status == "cancelled":  # paid then cancelled, or never paid
        return rng.choices(("refunded", "failed"), (70, 30))[0]
    if status == "returned":
        return "refunded"
    return "paid"


def main() -> None:
    rng = random.Random(2026)
    products = make_products(rng)
    customers = make_customers(rng)
    identities = make_identities(rng, customers)
    orders = make_orders(rng, customers, products)
    if {o["status"] for o in orders} != set(STATUSES):
        raise SystemExit("every status needs an example order: change the seed or weights")
    shop = {
        "shop": "Peak Demo Store",
        "version": VERSION,
        "currency": CURRENCY,
        "products": products,
        "customers": customers,
        "orders": orders,
        "policies": [
            {"topic": topic, "text": {"en": en, "zh": zh}, "version": VERSION}
            for topic, (en, zh) in POLICIES.items()
        ],
    }
    for name, data in (("demo_shop.json", shop), ("identities.json", identities)):
        text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
        (OUT / name).write_text(text, encoding="utf-8")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
