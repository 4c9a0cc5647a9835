"""The sandbox org's seed data: loaded at start (when there is no state file) and on reset.

Eleven open opportunities, ``006000000000001AAA`` ... ``006000000000011AAA``, all in
"Negotiation/Review", each with line items on the catalog's SKUs and every QTC field filled, so a
deal can be started from any of them. Each is the example quote with the same id (``examples/``):
customer, currency, terms, signer and lines agree, so starting a deal from the CRM or from the file
gives the same deal. Quote validity runs to 2030-12-31 so the seed never expires.
"""

from __future__ import annotations

from typing import Any

ORG_ID = "00D000000000001AAA"
USER_ID = "005000000000001AAA"
SEEDED_AT = "2026-01-05T09:00:00.000+0000"
VALID_UNTIL = "2030-12-31"
FIRST_GENERATED_SEQUENCE = 1000

PRODUCTS: tuple[tuple[str, str, str], ...] = (
    ("PLATFORM-PRO", "Platform Pro", "Platform"),
    ("PLATFORM-STARTER", "Platform Starter", "Platform"),
    ("IMPL-SERVICES", "Implementation Services", "Services"),
    ("SUPPORT-PREMIUM", "Premium Support", "Support"),
    ("ANALYTICS-ADDON", "Analytics Add-on", "Add-ons"),
    ("EXTRA-STORAGE-TB", "Extra Storage (TB)", "Add-ons"),
)
# The catalog's list prices (catalog.toml), for the line items' UnitPrice.
LIST_PRICES: dict[str, dict[str, float]] = {
    "PLATFORM-PRO": {"USD": 120.0, "EUR": 110.0, "GBP": 95.0},
    "PLATFORM-STARTER": {"USD": 45.0, "EUR": 42.0, "GBP": 36.0},
    "IMPL-SERVICES": {"USD": 5000.0, "EUR": 4600.0, "GBP": 4000.0},
    "SUPPORT-PREMIUM": {"USD": 1500.0, "EUR": 1400.0, "GBP": 1200.0},
    "ANALYTICS-ADDON": {"USD": 25.0, "EUR": 23.0},
    "EXTRA-STORAGE-TB": {"USD": 40.0, "EUR": 37.0, "GBP": 32.0},
}

# One account per opportunity, each the legal entity of the example quote with the same
# opportunity id (examples/): a deal started from the CRM is the deal the example starts.
ACCOUNTS: tuple[dict[str, Any], ...] = (
    {
        "Name": "Acme Robotics, Inc.",
        "Industry": "Manufacturing",
        "BillingStreet": "1 Main St",
        "BillingCity": "Austin",
        "BillingState": "TX",
        "BillingPostalCode": "78701",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "ap@acme.example",
        "QTC_Tax_Id_Type__c": "us_ein",
        "QTC_Tax_Id__c": "12-3456789",
    },
    {
        "Name": "Globex Logistics LLC",
        "Industry": "Logistics",
        "BillingStreet": "200 Harbor Blvd",
        "BillingCity": "Long Beach",
        "BillingState": "CA",
        "BillingPostalCode": "90802",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "billing@globex.example",
        "QTC_Tax_Id_Type__c": "us_ein",
        "QTC_Tax_Id__c": "98-7654321",
    },
    {
        "Name": "Initech Ltd",
        "Industry": "Software",
        "BillingStreet": "10 Finsbury Square",
        "BillingCity": "London",
        "BillingState": None,
        "BillingPostalCode": "EC2A 1AF",
        "BillingCountryCode": "GB",
        "QTC_Billing_Email__c": "accounts@initech.example",
        "QTC_Tax_Id_Type__c": "gb_vat",
        "QTC_Tax_Id__c": "GB123456789",
    },
    {
        "Name": "Umbrella Health Corp.",
        "Industry": "Healthcare",
        "BillingStreet": "500 Raccoon Ave",
        "BillingCity": "Denver",
        "BillingState": "CO",
        "BillingPostalCode": "80202",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "payables@umbrella.example",
        "QTC_Tax_Id_Type__c": "us_ein",
        "QTC_Tax_Id__c": "45-6789012",
    },
    {
        "Name": "Soylent Foods Co.",
        "Industry": "Food",
        "BillingStreet": "1 Green Way",
        "BillingCity": "Portland",
        "BillingState": "OR",
        "BillingPostalCode": "97201",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "ap@soylent.example",
        "QTC_Tax_Id_Type__c": None,
        "QTC_Tax_Id__c": None,
    },
    {
        "Name": "Kraftwerk Maschinenbau GmbH",
        "Industry": "Manufacturing",
        "BillingStreet": "Industriestrasse 7",
        "BillingCity": "Stuttgart",
        "BillingState": None,
        "BillingPostalCode": "70565",
        "BillingCountryCode": "DE",
        "QTC_Billing_Email__c": "rechnung@kraftwerk.example",
        "QTC_Tax_Id_Type__c": "eu_vat",
        "QTC_Tax_Id__c": "DE123456789",
    },
    {
        "Name": "Initech LLC",
        "Industry": "Software",
        "BillingStreet": "4120 Freidrich Ln",
        "BillingCity": "San Jose",
        "BillingState": "CA",
        "BillingPostalCode": "95134",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "billing@initech.example",
        "QTC_Tax_Id_Type__c": None,
        "QTC_Tax_Id__c": None,
    },
    {
        "Name": "Globex Logistics GmbH",
        "Industry": "Logistics",
        "BillingStreet": "Hafenstrasse 12",
        "BillingCity": "Hamburg",
        "BillingState": None,
        "BillingPostalCode": "20457",
        "BillingCountryCode": "DE",
        "QTC_Billing_Email__c": "rechnungen@globex.example",
        "QTC_Tax_Id_Type__c": "eu_vat",
        "QTC_Tax_Id__c": "DE123456789",
    },
    {
        "Name": "Hooli XYZ, Inc.",
        "Industry": "Technology",
        "BillingStreet": "1 Hacker Way",
        "BillingCity": "Palo Alto",
        "BillingState": "CA",
        "BillingPostalCode": "94301",
        "BillingCountryCode": "US",
        "QTC_Billing_Email__c": "payables@hooli.example",
        "QTC_Tax_Id_Type__c": "us_ein",
        "QTC_Tax_Id__c": "98-7654321",
    },
)
# The signers of the example quotes.
CONTACTS: tuple[tuple[int, str, str, str, str], ...] = (
    (0, "Jane", "Doe", "jane@acme.example", "VP Operations"),
    (1, "Hank", "Scorpio", "hank@globex.example", "CEO"),
    (2, "Bill", "Lumbergh", "bill@initech.example", "Division VP"),
    (3, "Alice", "Abernathy", "alice@umbrella.example", "Chief Information Officer"),
    (4, "Robert", "Thorn", "thorn@soylent.example", "Procurement"),
    (5, "Greta", "Weber", "greta.weber@kraftwerk.example", "Geschaeftsfuehrerin"),
    (6, "Bill", "Lumbergh", "bill@initech.example", "Division VP"),
    (7, "Klaus", "Weber", "k.weber@globex.example", "Geschaeftsfuehrer"),
    (8, "Gavin", "Belson", "gavin@hooli.example", "CEO"),
)

# (account index, name, currency, term, frequency, anchor, payment days, uplift, close date,
#  quote id, lines as (sku, quantity, discount percent)); the terms and lines of the example quote
# with the same id. Q-1005 is the rejected example: its unknown SKU has no product here.
OPPORTUNITIES: tuple[tuple[Any, ...], ...] = (
    (0, "Acme Robotics - Platform Pro 3y", "USD", 36, "annual", "start", 30, 7, "2026-03-31",
     "Q-1001", (("PLATFORM-PRO", 50, 10), ("SUPPORT-PREMIUM", 1, 0))),
    (1, "Globex Logistics - Platform Pro 2y", "USD", 24, "quarterly", "start", 45, 5, "2026-04-30",
     "Q-1002",
     (("PLATFORM-PRO", 120, 15), ("ANALYTICS-ADDON", 40, 5), ("EXTRA-STORAGE-TB", 10, 0))),
    (2, "Initech - Platform Pro monthly", "GBP", 12, "monthly", "start", 30, None, "2026-02-28",
     "Q-1003", (("PLATFORM-PRO", 25, 5), ("SUPPORT-PREMIUM", 1, 0), ("EXTRA-STORAGE-TB", 2, 0))),
    (3, "Umbrella Health - Enterprise rollout", "USD", 36, "annual", "start", 30, 6,
     "2026-06-30", "Q-1004", (("PLATFORM-PRO", 400, 28), ("SUPPORT-PREMIUM", 1, 10))),
    (7, "Globex Logistics GmbH - Platform Pro 3y", "EUR", 36, "annual", "start", 30, 7,
     "2026-05-31", "Q-1005", (("PLATFORM-PRO", 10, 10), ("EXTRA-STORAGE-TB", 2, 0))),
    (5, "Kraftwerk - Platform Pro monthly", "EUR", 12, "monthly", "first_of_month", 15, 0,
     "2026-07-31", "Q-1006", (("PLATFORM-PRO", 30, 12), ("ANALYTICS-ADDON", 10, 0))),
    (0, "Acme Robotics - Platform Pro monthly", "USD", 12, "monthly", "start", 30, 5,
     "2026-08-31", "Q-1101", (("PLATFORM-PRO", 50, 10),)),
    (0, "Acme Robotics - 10 more seats (amendment)", "USD", 12, "monthly", "start", 30, 5,
     "2026-09-30", "Q-1101-A1", (("PLATFORM-PRO", 10, 0),)),
    (6, "Initech - onboarding services", "USD", 12, "annual", "start", 15, None, "2026-09-30",
     "Q-1103", (("IMPL-SERVICES", 2, 0),)),
    (4, "Soylent Foods - Platform trial", "USD", 18, "annual", "start", 90, 12, "2026-10-31",
     "Q-1005", (("PLATFORM-PRO", 3, 55), ("PLATFORM-STARTER", 10, 0))),
    (8, "Hooli XYZ - Platform Pro 2y on Ironclad", "USD", 24, "annual", "start", 45, 5,
     "2026-10-31", "Q-1110", (("PLATFORM-PRO", 40, 5), ("SUPPORT-PREMIUM", 1, 0))),
)  # fmt: skip


def record_id(key_prefix: str, sequence: int) -> str:
    """An 18-character Salesforce-style id: key prefix, zero-padded sequence, ``AAA``."""
    return f"{key_prefix}{sequence:012d}AAA"


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "IsDeleted": False, "CreatedDate": SEEDED_AT, "LastModifiedDate": SEEDED_AT}


def seed_state() -> dict[str, Any]:
    """A fresh org: ``{"objects": {type: {id: record}}, "sequence": next generated number}``."""
    objects: dict[str, dict[str, dict[str, Any]]] = {
        "Account": {},
        "Contact": {},
        "Product2": {},
        "Opportunity": {},
        "OpportunityLineItem": {},
    }

    def add(type_name: str, key_prefix: str, record: dict[str, Any]) -> str:
        new_id = record_id(key_prefix, len(objects[type_name]) + 1)
        objects[type_name][new_id] = _stamp({"Id": new_id, **record})
        return new_id

    product_ids = {
        code: add(
            "Product2",
            "01t",
            {"Name": name, "ProductCode": code, "Family": family, "IsActive": True},
        )
        for code, name, family in PRODUCTS
    }
    account_ids = [add("Account", "001", account) for account in ACCOUNTS]
    signers: dict[int, tuple[str, str]] = {}
    for index, first, last, email, title in CONTACTS:
        add(
            "Contact",
            "003",
            {
                "AccountId": account_ids[index],
                "FirstName": first,
                "LastName": last,
                "Email": email,
                "Title": title,
            },
        )
        signers[index] = (f"{first} {last}", email)

    for (
        account,
        name,
        currency,
        term,
        frequency,
        anchor,
        days,
        uplift,
        close,
        quote,
        lines,
    ) in OPPORTUNITIES:
        signer_name, signer_email = signers[account]
        opportunity_id = add(
            "Opportunity",
            "006",
            {
                "Name": name,
                "StageName": "Negotiation/Review",
                "CloseDate": close,
                "AccountId": account_ids[account],
                "CurrencyIsoCode": currency,
                "QTC_Quote_Id__c": quote,
                "QTC_Term_Months__c": term,
                "QTC_Billing_Frequency__c": frequency,
                "QTC_Billing_Anchor__c": anchor,
                "QTC_Payment_Terms_Days__c": days,
                "QTC_Uplift_Percent__c": uplift,
                "QTC_Valid_Until__c": VALID_UNTIL,
                "QTC_Signer_Name__c": signer_name,
                "QTC_Signer_Email__c": signer_email,
                "QTC_Deal_Id__c": None,
                "Stripe_Customer_Id__c": None,
                "Stripe_Subscription_Id__c": None,
                "Stripe_Invoice_Id__c": None,
                "Stripe_Invoice_Url__c": None,
            },
        )
        for sku, quantity, discount in lines:
            add(
                "OpportunityLineItem",
                "00k",
                {
                    "OpportunityId": opportunity_id,
                    "Product2Id": product_ids[sku],
                    "Quantity": quantity,
                    "Discount": discount,
                    "UnitPrice": LIST_PRICES[sku][currency],
                },
            )
    return {"objects": objects, "sequence": FIRST_GENERATED_SEQUENCE}
