"""Tax ids the billing system accepts: which types a legal entity's country may use, and the
format of each type's value.

The type names are the billing system's own (``us_ein``, ``eu_vat``, ``gb_vat``, ...): they are
what the customer record carries, and a type or value the billing system refuses would park a deal
whose contract is already signed. So a quote is checked here before its contract is sent.

Formats follow the billing system's published list of tax-id types, which gives every type its
country and an example value (``DE123456789`` for a German VAT number). Where the national format
varies in length (VAT numbers of several EU states) the pattern admits every published length.
A type whose format this table does not spell out (``FORMATS`` has no entry) is still checked
for its country and for the characters a tax id is made of.

Values are compared exactly as written: no spaces, and letters in capitals, as the billing system
stores and prints them on invoices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# fmt: off
EU_COUNTRIES = frozenset(
    {
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
        "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"
    }
)
# fmt: on

# Every type the billing system accepts. A type whose first part is a country code belongs to that
# country; the rest are listed in _COUNTRIES_OF below.
# fmt: off
TYPES: frozenset[str] = frozenset(
    {
        "ad_nrt", "ae_trn", "al_tin", "am_tin", "ao_tin", "ar_cuit", "au_abn", "au_acn", "au_arn",
        "au_wpn", "aw_tin", "az_tin", "ba_tin", "bb_tin", "bd_bin", "bf_ifu", "bg_uic", "bh_vat",
        "bj_ifu", "bo_tin", "br_cnpj", "br_cpf", "bs_tin", "bw_vat", "by_tin", "ca_bn",
        "ca_gst_hst", "ca_pst_bc", "ca_pst_mb", "ca_pst_sk", "ca_qst", "cd_nif", "ch_uid", "ch_vat",
        "ci_vat", "cl_tin", "cm_niu", "cn_tin", "co_nit", "cr_tin", "cv_nif", "cz_dic", "de_stn",
        "do_rcn", "ec_ruc", "eg_tin", "es_cif", "et_tin", "eu_oss_vat", "eu_vat", "fo_vat",
        "fr_siren", "fr_siret", "fr_spi", "gb_vat", "ge_vat", "gh_tin", "gi_tin", "gn_nif", "hk_br",
        "hr_oib", "hu_tin", "ic_nif", "id_npwp", "il_vat", "in_gst", "is_kt", "is_vat", "it_cf",
        "jp_cn", "jp_rn", "jp_trn", "ke_pin", "kg_tin", "kh_tin", "kr_brn", "kz_bin", "la_tin",
        "li_uid", "li_vat", "lk_vat", "ma_vat", "md_cf", "md_vat", "me_pib", "mk_vat", "mr_nif",
        "mu_vat", "mx_rfc", "my_frp", "my_itn", "my_sst", "mz_nuit", "ng_tin", "no_vat", "no_voec",
        "np_pan", "nz_bn", "nz_gst", "om_vat", "pe_ruc", "ph_tin", "pl_nip", "pt_nif", "py_ruc",
        "ro_tin", "rs_pib", "ru_inn", "ru_kpp", "sa_vat", "sg_gst", "sg_uen", "si_tin", "sm_coe",
        "sn_ninea", "sr_fin", "sv_nit", "th_vat", "tj_tin", "tr_tin", "tt_bir", "tt_vat", "tw_vat",
        "tz_vat", "ua_vat", "ug_tin", "us_ein", "uy_ruc", "uz_tin", "uz_vat", "ve_rif", "vn_tin",
        "za_vat", "zm_tin", "zw_tin"
    }
)
# fmt: on

_COUNTRIES_OF: dict[str, frozenset[str]] = {
    # EU VAT numbers, and Northern Ireland's (XI prefix) for goods under the EU VAT rules.
    "eu_vat": EU_COUNTRIES | {"GB"},
    # The One Stop Shop number is issued to businesses established outside the Union.
    "eu_oss_vat": frozenset(),
    # The Canary Islands are part of Spain; their tax number is a type of its own.
    "ic_nif": frozenset({"ES"}),
}

# The prefix an EU VAT number carries, where it is not the country code.
_VAT_PREFIX = {"GR": "EL", "GB": "XI"}

_EU_VAT: dict[str, str] = {
    "AT": r"ATU\d{8}",
    "BE": r"BE[01]\d{9}",
    "BG": r"BG\d{9,10}",
    "CY": r"CY\d{8}[A-Z]",
    "CZ": r"CZ\d{8,10}",
    "DE": r"DE\d{9}",
    "DK": r"DK\d{8}",
    "EE": r"EE\d{9}",
    "ES": r"ES[A-Z0-9]\d{7}[A-Z0-9]",
    "FI": r"FI\d{8}",
    "FR": r"FR[A-HJ-NP-Z0-9]{2}\d{9}",
    "GR": r"EL\d{9}",
    "HR": r"HR\d{11}",
    "HU": r"HU\d{8}(?:\d{3})?",
    "IE": r"IE\d{7}[A-Z]{1,2}|IE\d[A-Z+*]\d{5}[A-Z]",
    "IT": r"IT\d{11}",
    "LT": r"LT\d{9}(?:\d{3})?",
    "LU": r"LU\d{8}",
    "LV": r"LV\d{11}",
    "MT": r"MT\d{8}",
    "NL": r"NL\d{9}B\d{2}",
    "PL": r"PL\d{10}",
    "PT": r"PT\d{9}",
    "RO": r"RO\d{2,10}",
    "SE": r"SE\d{12}",
    "SI": r"SI\d{8}",
    "SK": r"SK\d{10}",
    "GB": r"XI(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})",
}

# The published example of each member state's VAT number.
_EU_EXAMPLES = {
    "AT": "ATU12345678",
    "BE": "BE0123456789",
    "BG": "BG0123456789",
    "CY": "CY12345678Z",
    "CZ": "CZ1234567890",
    "DE": "DE123456789",
    "DK": "DK12345678",
    "EE": "EE123456789",
    "ES": "ESA1234567Z",
    "FI": "FI12345678",
    "FR": "FRAB123456789",
    "GR": "EL123456789",
    "HR": "HR12345678912",
    "HU": "HU12345678",
    "IE": "IE1234567AB",
    "IT": "IT12345678912",
    "LT": "LT123456789123",
    "LU": "LU12345678",
    "LV": "LV12345678912",
    "MT": "MT12345678",
    "NL": "NL123456789B12",
    "PL": "PL1234567890",
    "PT": "PT123456789",
    "RO": "RO1234567891",
    "SE": "SE123456789123",
    "SI": "SI12345678",
    "SK": "SK1234567891",
    "GB": "XI123456789",
}


@dataclass(frozen=True)
class Format:
    pattern: str
    example: str
    name: str


FORMATS: dict[str, Format] = {
    "ad_nrt": Format(r"[A-Z]-\d{6}-[A-Z]", "A-123456-Z", "Andorran NRT number"),
    "ae_trn": Format(r"\d{15}", "123456789012345", "United Arab Emirates TRN"),
    "ar_cuit": Format(r"\d{2}-\d{7,8}-\d{1,2}", "12-3456789-01", "Argentinian CUIT"),
    "au_abn": Format(r"\d{11}", "12345678912", "Australian Business Number"),
    "au_arn": Format(r"\d{12}", "123456789123", "Australian Taxation Office Reference Number"),
    "bg_uic": Format(r"\d{9}(?:\d{4})?", "123456789", "Bulgarian Unified Identification Code"),
    "bh_vat": Format(r"\d{15}", "123456789012345", "Bahraini VAT number"),
    "bo_tin": Format(r"\d{9}", "123456789", "Bolivian tax id"),
    "br_cnpj": Format(r"\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}", "01.234.456/5432-10", "Brazilian CNPJ"),
    "br_cpf": Format(r"\d{3}\.\d{3}\.\d{3}-\d{2}", "123.456.789-87", "Brazilian CPF"),
    "ca_bn": Format(r"\d{9}", "123456789", "Canadian Business Number"),
    "ca_gst_hst": Format(r"\d{9}RT\d{4}", "123456789RT0002", "Canadian GST/HST number"),
    "ca_pst_bc": Format(r"PST-\d{4}-\d{4}", "PST-1234-5678", "British Columbia PST number"),
    "ca_pst_mb": Format(r"\d{6}-\d", "123456-7", "Manitoba PST number"),
    "ca_pst_sk": Format(r"\d{7}", "1234567", "Saskatchewan PST number"),
    "ca_qst": Format(r"\d{10}TQ\d{4}", "1234567890TQ1234", "Québec QST number"),
    "ch_uid": Format(r"CHE-\d{3}\.\d{3}\.\d{3}(?: HR)?", "CHE-123.456.789 HR", "Swiss UID"),
    "ch_vat": Format(
        r"CHE-\d{3}\.\d{3}\.\d{3} (?:MWST|TVA|IVA)", "CHE-123.456.789 MWST", "Swiss VAT number"
    ),
    "cl_tin": Format(r"\d{1,2}\.\d{3}\.\d{3}-[\dK]", "12.345.678-K", "Chilean TIN"),
    "cn_tin": Format(r"[0-9A-Z]{18}", "123456789012345678", "Chinese tax id"),
    "co_nit": Format(r"\d{3}\.\d{3}\.\d{3}-\d", "123.456.789-0", "Colombian NIT"),
    "cr_tin": Format(r"\d-\d{3}-\d{6}", "1-234-567890", "Costa Rican tax id"),
    "de_stn": Format(r"\d{10,13}", "1234567890", "German tax number (Steuernummer)"),
    "do_rcn": Format(r"\d{3}-\d{7}-\d", "123-4567890-1", "Dominican RCN"),
    "ec_ruc": Format(r"\d{13}", "1234567890001", "Ecuadorian RUC"),
    "eg_tin": Format(r"\d{9}", "123456789", "Egyptian tax id"),
    "es_cif": Format(r"[A-Z]\d{7}[A-Z0-9]", "A12345678", "Spanish CIF"),
    "eu_oss_vat": Format(r"EU\d{9}", "EU123456789", "EU One Stop Shop VAT number"),
    "gb_vat": Format(r"GB(?:\d{9}|\d{12}|GD\d{3}|HA\d{3})", "GB123456789", "UK VAT number"),
    "ge_vat": Format(r"\d{9}", "123456789", "Georgian VAT number"),
    "hk_br": Format(r"\d{8}", "12345678", "Hong Kong BR number"),
    "hr_oib": Format(r"\d{11}", "12345678901", "Croatian OIB"),
    "hu_tin": Format(r"\d{8}-\d-\d{2}", "12345678-1-23", "Hungarian tax number"),
    "id_npwp": Format(
        r"\d{2,3}\.\d{3}\.\d{3}\.\d-\d{3}\.\d{3}|\d{16}", "012.345.678.9-012.345", "Indonesian NPWP"
    ),
    "il_vat": Format(r"\d{9}", "000012345", "Israeli VAT number"),
    "in_gst": Format(r"\d{2}[A-Z]{5}\d{4}[A-Z][A-Z0-9]Z[A-Z0-9]", "12ABCDE3456FGZH", "Indian GST"),
    "is_vat": Format(r"\d{5,6}", "123456", "Icelandic VAT number"),
    "jp_cn": Format(r"\d{13}", "1234567891234", "Japanese Corporate Number"),
    "jp_rn": Format(r"\d{5}", "12345", "Japanese Registered Foreign Business number"),
    "jp_trn": Format(r"T\d{13}", "T1234567891234", "Japanese Tax Registration Number"),
    "ke_pin": Format(r"P\d{9}[A-Z]", "P000111111A", "Kenyan PIN"),
    "kr_brn": Format(r"\d{3}-\d{2}-\d{5}", "123-45-67890", "Korean BRN"),
    "kz_bin": Format(r"\d{12}", "123456789012", "Kazakh BIN"),
    "li_uid": Format(r"CHE\d{9}", "CHE123456789", "Liechtenstein UID"),
    "my_frp": Format(r"\d{8}", "12345678", "Malaysian FRP number"),
    "my_itn": Format(r"C ?\d{10}", "C 1234567890", "Malaysian ITN"),
    "my_sst": Format(r"A\d{2}-\d{4}-\d{8}", "A12-3456-78912345", "Malaysian SST number"),
    "mx_rfc": Format(r"[A-Z&]{3,4}\d{6}[A-Z0-9]{3}", "ABC010203AB9", "Mexican RFC"),
    "ng_tin": Format(r"\d{8}-\d{4}", "12345678-0001", "Nigerian TIN"),
    "no_vat": Format(r"\d{9}MVA", "123456789MVA", "Norwegian VAT number"),
    "no_voec": Format(r"\d{7}", "1234567", "Norwegian VOEC number"),
    "nz_gst": Format(r"\d{8,9}", "123456789", "New Zealand GST number"),
    "om_vat": Format(r"OM\d{10}", "OM1234567890", "Omani VAT number"),
    "pe_ruc": Format(r"\d{11}", "12345678901", "Peruvian RUC"),
    "ph_tin": Format(r"\d{12}", "123456789012", "Philippine TIN"),
    "ro_tin": Format(r"\d{13}", "1234567890123", "Romanian tax id"),
    "rs_pib": Format(r"\d{9}", "123456789", "Serbian PIB"),
    "ru_inn": Format(r"\d{10}(?:\d{2})?", "1234567891", "Russian INN"),
    "ru_kpp": Format(r"\d{9}", "123456789", "Russian KPP"),
    "sa_vat": Format(r"\d{15}", "123456789012345", "Saudi VAT number"),
    "sg_gst": Format(r"[A-Z]\d{8}[A-Z]", "M12345678X", "Singaporean GST"),
    "sg_uen": Format(r"\d{8,9}[A-Z]|[A-Z]\d{2}[A-Z]{2}\d{4}[A-Z]", "123456789F", "Singapore UEN"),
    "si_tin": Format(r"\d{8}", "12345678", "Slovenian tax number"),
    "sv_nit": Format(r"\d{4}-\d{6}-\d{3}-\d", "1234-567890-123-4", "Salvadoran NIT"),
    "th_vat": Format(r"\d{13}", "1234567891234", "Thai VAT number"),
    "tr_tin": Format(r"\d{9,11}", "0123456789", "Turkish tax id"),
    "tw_vat": Format(r"\d{8}", "12345678", "Taiwanese VAT number"),
    "ua_vat": Format(r"\d{9,12}", "123456789", "Ukrainian VAT number"),
    "us_ein": Format(r"\d{2}-?\d{7}", "12-3456789", "US Employer Identification Number"),
    "uy_ruc": Format(r"\d{12}", "123456789012", "Uruguayan RUC"),
    "ve_rif": Format(r"[A-Z]-\d{8}-\d", "A-12345678-9", "Venezuelan RIF"),
    "vn_tin": Format(r"\d{10}(?:-\d{3})?", "1234567890", "Vietnamese tax id"),
    "za_vat": Format(r"4\d{9}", "4123456789", "South African VAT number"),
}

# What any tax id is made of, for types without a format of their own above.
_ANY_TAX_ID = re.compile(r"[A-Z0-9][A-Z0-9 ./-]{1,30}[A-Z0-9]")
_COMPILED = {name: re.compile(f.pattern) for name, f in FORMATS.items()}
_EU_COMPILED = {country: re.compile(pattern) for country, pattern in _EU_VAT.items()}


@dataclass(frozen=True)
class TaxIdProblem:
    """What is wrong with a tax id: ``field`` is ``type`` or ``value``."""

    field: str
    message: str


def countries_of(tax_type: str) -> frozenset[str]:
    """The countries whose legal entities may hold a tax id of this type (empty: outside the EU,
    for the EU One Stop Shop number)."""
    if tax_type in _COUNTRIES_OF:
        return _COUNTRIES_OF[tax_type]
    return frozenset({tax_type.split("_", 1)[0].upper()})


def types_for(country: str) -> list[str]:
    """The tax-id types a legal entity in ``country`` may hold, in name order."""
    return sorted(t for t in TYPES if _allowed_in(t, country))


def _allowed_in(tax_type: str, country: str) -> bool:
    if tax_type == "eu_oss_vat":
        return country not in EU_COUNTRIES
    return country in countries_of(tax_type)


def example(tax_type: str, country: str) -> str | None:
    """A well-formed value of this type for this country, as the billing system publishes it."""
    if tax_type == "eu_vat":
        return _EU_EXAMPLES.get(country)
    fmt = FORMATS.get(tax_type)
    return fmt.example if fmt else None


def value_is_valid(tax_type: str, value: str) -> bool:
    """Whether ``value`` has the published format of ``tax_type``, whatever the holder's country.

    An EU VAT number names its member state in its prefix, so it is checked against that
    state's format.
    """
    if tax_type == "eu_vat":
        country = _eu_country_of(value)
        return country is not None and _EU_COMPILED[country].fullmatch(value) is not None
    pattern = _COMPILED.get(tax_type, _ANY_TAX_ID)
    return pattern.fullmatch(value) is not None


def country_of_value(tax_type: str, value: str) -> str | None:
    """The country a tax id belongs to: its type's country, or an EU VAT number's prefix."""
    if tax_type == "eu_vat":
        return _eu_country_of(value)
    if tax_type == "eu_oss_vat":
        return None
    countries = countries_of(tax_type)
    return next(iter(countries)) if len(countries) == 1 else None


def _eu_country_of(value: str) -> str | None:
    prefix = value[:2]
    for country, vat_prefix in _VAT_PREFIX.items():
        if prefix == vat_prefix:
            return country
    return prefix if prefix in EU_COUNTRIES else None


def check(country: str, tax_type: str, value: str) -> list[TaxIdProblem]:
    """Every reason the billing system would refuse this tax id for an entity in ``country``.

    An unknown type, or one not issued in ``country``, is a problem with ``type`` (the value is not
    checked then: its format depends on the type). A value that does not have the type's published
    format, or an EU VAT number of another member state, is a problem with ``value``.
    """
    if tax_type not in TYPES or not _allowed_in(tax_type, country):
        return [TaxIdProblem("type", _type_hint(country))]
    if tax_type == "eu_vat":
        pattern = _EU_COMPILED.get(country)
        if pattern is not None and pattern.fullmatch(value) is None:
            return [TaxIdProblem("value", _value_hint(tax_type, country))]
        return []
    if not value_is_valid(tax_type, value):
        return [TaxIdProblem("value", _value_hint(tax_type, country))]
    return []


def _type_hint(country: str) -> str:
    allowed = types_for(country)
    if not allowed:
        return f"must be left out: the billing system accepts no tax id for {country}"
    return f"must be a tax-id type the billing system accepts for {country} ({', '.join(allowed)})"


def _value_hint(tax_type: str, country: str) -> str:
    if tax_type == "eu_vat":
        prefix = _VAT_PREFIX.get(country, country)
        return (
            f"must be a VAT number of {country} with its {prefix} prefix, such as "
            f"{_EU_EXAMPLES[country]}, written without spaces"
        )
    fmt = FORMATS.get(tax_type)
    if fmt is None:
        return f"must be a {tax_type} number: capital letters and digits, with '.', '-' or '/'"
    return f"must be a {fmt.name} such as {fmt.example}, written exactly in that form"
