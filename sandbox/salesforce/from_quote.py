"""Give the sandbox org the opportunity a hand-written quote names: `POST /_sandbox/opportunities`.

A quote written by hand names an opportunity id the seed may not hold; without it the deal's
contract is sent and signed, and Closed Won then finds no opportunity. The product's sandbox
entry points post the quote here before they start its deal; the org gets an Account, the
Opportunity under exactly that id (every QTC field from the quote) and its line items, so a
``start-from-crm`` of the same id prices to the same quote. An opportunity the org already holds
is left as it is: the CRM stays the source of truth.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from qtc.models import Quote
from sandbox.salesforce.org import Org
from sandbox.salesforce.seed import LIST_PRICES


class GiveOpportunity(BaseModel):
    quote: Quote


def give_opportunity(org: Org, quote: Quote) -> bool:
    """Add the quote's opportunity (and its account and line items); False when already there.

    Raises:
        SalesforceError: The org refuses a value (e.g. a currency outside its picklist).
    """
    if org.lookup("Opportunity", quote.opportunity_id) is not None:
        return False
    account = quote.account
    currency = quote.currency.upper()
    account_id = org.create(
        org.type("Account"),
        {
            "Name": account.legal_name,
            "BillingStreet": account.address.line1,
            "BillingCity": account.address.city,
            "BillingState": account.address.state,
            "BillingPostalCode": account.address.postal_code,
            "BillingCountryCode": account.address.country,
            "QTC_Billing_Email__c": account.billing_email,
            "QTC_Tax_Id_Type__c": account.tax_id.type if account.tax_id else None,
            "QTC_Tax_Id__c": account.tax_id.value if account.tax_id else None,
        },
    )
    generated = org.create(
        org.type("Opportunity"),
        {
            "Name": f"{account.legal_name} - {quote.quote_id}",
            "StageName": "Negotiation/Review",
            "CloseDate": quote.valid_until.isoformat(),
            "AccountId": account_id,
            "CurrencyIsoCode": currency,
            "QTC_Quote_Id__c": quote.quote_id,
            "QTC_Term_Months__c": quote.term_months,
            "QTC_Billing_Frequency__c": quote.billing_frequency,
            "QTC_Billing_Anchor__c": quote.billing_anchor,
            "QTC_Payment_Terms_Days__c": quote.payment_terms_days,
            "QTC_Uplift_Percent__c": _number(quote.uplift_percent or Decimal(0)),
            "QTC_Valid_Until__c": quote.valid_until.isoformat(),
            "QTC_Signer_Name__c": quote.signer.name,
            "QTC_Signer_Email__c": quote.signer.email,
        },
    )
    # The id is the quote's, not a generated one: re-key the record the org just validated.
    with org.store.lock:
        table = org.table("Opportunity")
        record = table.pop(generated)
        record["Id"] = quote.opportunity_id
        table[quote.opportunity_id] = record
        org.store.save()
    products = {row["ProductCode"]: row["Id"] for row in org.rows("Product2")}
    for line in quote.lines:
        product_id = products.get(line.sku) or org.create(
            org.type("Product2"),
            {"Name": line.sku, "ProductCode": line.sku, "IsActive": True},
        )
        org.create(
            org.type("OpportunityLineItem"),
            {
                "OpportunityId": quote.opportunity_id,
                "Product2Id": product_id,
                "Quantity": line.quantity,
                "Discount": _number(line.discount_percent),
                "UnitPrice": LIST_PRICES.get(line.sku, {}).get(currency, 0.0),
            },
        )
    return True


def _number(value: Decimal) -> Any:
    return int(value) if value == value.to_integral_value() else float(value)
