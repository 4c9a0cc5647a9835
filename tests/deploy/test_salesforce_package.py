"""salesforce/: the Salesforce DX source package holds every custom field the adapter reads or
writes, grants them in the permission set, and wires the Closed-Won flow to the signed callout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

from integrations.salesforce.mapping import FieldMap

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "salesforce"
SOURCE = PACKAGE / "force-app" / "main" / "default"
NS = {"md": "http://soap.sforce.com/2006/04/metadata"}


def custom_fields_of_the_field_map() -> set[str]:
    """``Object.Field__c`` for every custom field the default field map names."""
    found: set[str] = set()
    for value in FieldMap().model_dump().values():
        if not isinstance(value, str) or not value.endswith("__c"):
            continue
        if value.startswith("Account."):
            found.add(value)
        elif "." not in value:
            found.add(f"Opportunity.{value}")
    return found


def packaged_fields() -> set[str]:
    return {
        f"{path.parent.parent.name}.{path.name.removesuffix('.field-meta.xml')}"
        for path in (SOURCE / "objects").glob("*/fields/*.field-meta.xml")
    }


def xml(path: Path) -> Element:
    return ElementTree.parse(path).getroot()


def test_every_custom_field_the_adapter_uses_is_in_the_package() -> None:
    wanted = custom_fields_of_the_field_map()
    assert wanted, "the field map names no custom field?"
    assert wanted <= packaged_fields()


def test_the_permission_set_grants_every_field_the_adapter_uses() -> None:
    permissions = xml(SOURCE / "permissionsets" / "QTC_Integration.permissionset-meta.xml")
    granted = {
        p.findtext("md:field", namespaces=NS)
        for p in permissions.findall("md:fieldPermissions", NS)
        if p.findtext("md:readable", namespaces=NS) == "true"
    }
    assert custom_fields_of_the_field_map() <= granted


def test_every_field_file_names_the_field_it_defines_and_is_well_formed() -> None:
    for path in (SOURCE / "objects").glob("*/fields/*.field-meta.xml"):
        field = xml(path)
        assert field.findtext("md:fullName", namespaces=NS) == path.name.removesuffix(
            ".field-meta.xml"
        )
        assert field.findtext("md:type", namespaces=NS)


def test_the_deal_id_is_an_external_id() -> None:
    deal_id = xml(SOURCE / "objects" / "Opportunity" / "fields" / "QTC_Deal_Id__c.field-meta.xml")
    assert deal_id.findtext("md:externalId", namespaces=NS) == "true"


def test_the_closed_won_flow_calls_the_signed_callout_through_the_named_credential() -> None:
    flow = xml(SOURCE / "flows" / "QTC_Closed_Won.flow-meta.xml")
    start = flow.find("md:start", NS)
    assert start is not None
    assert start.findtext("md:object", namespaces=NS) == "Opportunity"
    condition = start.find("md:filters", NS)
    assert condition is not None
    assert condition.findtext("md:field", namespaces=NS) == "StageName"
    assert condition.findtext("md:value/md:stringValue", namespaces=NS) == "Closed Won"
    action = flow.find("md:actionCalls", NS)
    assert action is not None
    assert action.findtext("md:actionName", namespaces=NS) == "QtcCallout"
    apex = (SOURCE / "classes" / "QtcCallout.cls").read_text("utf-8")
    assert "callout:QTC/webhooks/salesforce" in apex
    assert "X-Qtc-Signature" in apex and "hmacSHA256" in apex
    named = xml(SOURCE / "namedCredentials" / "QTC.namedCredential-meta.xml")
    credentials = {
        p.findtext("md:externalCredential", namespaces=NS)
        for p in named.findall("md:namedCredentialParameters", NS)
    }
    assert "QTC_Callout" in credentials
    assert (SOURCE / "externalCredentials" / "QTC_Callout.externalCredential-meta.xml").exists()


def test_the_apex_class_has_a_test_and_the_project_file_is_valid() -> None:
    project = json.loads((PACKAGE / "sfdx-project.json").read_text("utf-8"))
    assert project["packageDirectories"][0]["path"] == "force-app"
    tests = (SOURCE / "classes" / "QtcCalloutTest.cls").read_text("utf-8")
    assert re.search(r"@IsTest", tests)
