//! The DDIC structures and tables the simulated functions use, with SAP's names,
//! component order, types and lengths (ECC 6.0 / S/4HANA on-premise).
//!
//! Where SAP's structure has more components than the simulator fills, the
//! components are still declared (so a client sending them is not rejected) and
//! come back initial. Field lists follow the DDIC as documented publicly; the few
//! structures whose exact component list could not be confirmed
//! (`BAPICUSTOMER_04`, `_05`, `_ADDRESSDATA`) carry the commonly used components.

use super::types::{FieldDef as F, StructDef, StructKind};

const fn st(name: &'static str, text: &'static str, fields: &'static [F]) -> StructDef {
    StructDef {
        name,
        kind: StructKind::Structure,
        text,
        fields,
    }
}

/// The fields every BAPI return structure starts with.
macro_rules! ret_fields {
    ($($extra:expr),* $(,)?) => {
        &[
            F::c("TYPE", 1, "Message type: S Success, E Error, W Warning, I Info, A Abort"),
            F::c("ID", 20, "Message Class"),
            F::n("NUMBER", 3, "Message Number"),
            F::c("MESSAGE", 220, "Message Text"),
            F::c("LOG_NO", 20, "Application log: log number"),
            F::n("LOG_MSG_NO", 6, "Application log: Internal message serial number"),
            F::c("MESSAGE_V1", 50, "Message Variable"),
            F::c("MESSAGE_V2", 50, "Message Variable"),
            F::c("MESSAGE_V3", 50, "Message Variable"),
            F::c("MESSAGE_V4", 50, "Message Variable"),
            $($extra),*
        ]
    };
}

/// Return parameter (`BAPIRET1`).
pub(crate) static BAPIRET1: StructDef = st("BAPIRET1", "Return Parameter", ret_fields!());
/// Return parameter (`BAPIRETURN1`).
pub(crate) static BAPIRETURN1: StructDef = st("BAPIRETURN1", "Return Parameter", ret_fields!());
/// Return parameter (`BAPIRET2`).
pub(crate) static BAPIRET2: StructDef = st(
    "BAPIRET2",
    "Return Parameter",
    ret_fields!(
        F::c("PARAMETER", 32, "Parameter Name"),
        F::i("ROW", "Lines in parameter"),
        F::c("FIELD", 30, "Field in parameter"),
        F::c("SYSTEM", 10, "Logical system from which message originates"),
    ),
);

/// Customer personal data (`BAPIKNA101_1`), 803 characters.
pub(crate) static BAPIKNA101_1: StructDef = st(
    "BAPIKNA101_1",
    "Customer Personal Data",
    &[
        F::c(
            "TITLE_P",
            30,
            "Form of address for a person (Mr, Mrs...etc)",
        ),
        F::c("FIRSTNAME", 40, "First name"),
        F::c("LASTNAME", 40, "Last name"),
        F::c(
            "MIDDLENAME",
            40,
            "Middle name or second forename of a person",
        ),
        F::c("SECONDNAME", 40, "Second surname of a person"),
        F::d("DATE_BIRTH", "Date of Birth"),
        F::c("CITY", 40, "City"),
        F::c("DISTRICT", 40, "District"),
        F::c("POSTL_COD1", 10, "City postal code"),
        F::c("POSTL_COD2", 10, "PO Box postal code"),
        F::c("PO_BOX", 10, "PO Box"),
        F::c("PO_BOX_CIT", 40, "PO Box city"),
        F::c("STREET", 60, "Street"),
        F::c("HOUSE_NO", 10, "House Number"),
        F::c("BUILDING", 20, "Building (Number or Code)"),
        F::c("FLOOR", 10, "Floor in building"),
        F::c("ROOM_NO", 10, "Room or Appartment Number"),
        F::c("COUNTRY", 3, "Country Key"),
        F::c("COUNTRYISO", 2, "Country ISO code"),
        F::c("REGION", 3, "Region (State, Province, County)"),
        F::c(
            "TEL1_NUMBR",
            30,
            "First telephone no.: dialling code+number",
        ),
        F::c("TEL1_EXT", 10, "First Telephone No.: Extension"),
        F::c("FAX_NUMBER", 30, "First fax no.: dialling code+number"),
        F::c("FAX_EXTENS", 10, "First fax no.: extension"),
        F::c("E_MAIL", 241, "E-Mail Address"),
        F::c("LANGU_P", 1, "Language Key").ddic("LANG"),
        F::c("LANGUP_ISO", 2, "Language according to ISO 639"),
        F::c("CURRENCY", 5, "Currency Key").ddic("CUKY"),
        F::c("CURRENCY_ISO", 3, "ISO currency code"),
        F::c("TITLE_KEY", 4, "Form-of-Address Key"),
        F::c(
            "ONLY_CHANGE_COMADDRESS",
            1,
            "Change only the company address",
        ),
    ],
);

/// Change flags for `BAPIKNA101_1` (`BAPIKNA101_1X`).
pub(crate) static BAPIKNA101_1X: StructDef = st(
    "BAPIKNA101_1X",
    "X Customer Data Structure for BAPIs to Customer",
    &x_fields::PERSONAL,
);

/// Copy reference: sales area and reference customer (`BAPIKNA102`).
pub(crate) static BAPIKNA102: StructDef = st(
    "BAPIKNA102",
    "Reference Data",
    &[
        F::c("SALESORG", 4, "Sales Organization"),
        F::c("DISTR_CHAN", 2, "Distribution Channel"),
        F::c("DIVISION", 2, "Division"),
        F::c("REF_CUSTMR", 10, "Reference customer").alpha(),
    ],
);

/// Customer number (`BAPIKNA103`).
pub(crate) static BAPIKNA103: StructDef = st(
    "BAPIKNA103",
    "Customer Number",
    &[F::c("CUSTOMER", 10, "Customer Number").alpha()],
);

/// Optional customer data (`BAPIKNA105`), 50 characters.
pub(crate) static BAPIKNA105: StructDef = st(
    "BAPIKNA105",
    "Optional Customer Data Structure for BAPIs for BO Customer",
    &[
        F::c(
            "TRANSPZONE",
            10,
            "Transportation zone to or from which the goods are delivered",
        ),
        F::c(
            "CONTROL_ACCOUNT",
            10,
            "Reconciliation Account in General Ledger",
        )
        .alpha(),
        F::c("PMNTTRMS", 4, "Terms of Payment Key"),
        F::c("SHIP_COND", 2, "Shipping Conditions"),
        F::c("DELYG_PLNT", 4, "Delivering Plant"),
        F::c("PART_DLV", 1, "Partial delivery per item"),
        F::c("C_CTR_AREA", 4, "Credit control area"),
        F::c("TAXJURCODE", 15, "Tax Jurisdiction"),
    ],
);

/// Change flags for `BAPIKNA105` (`BAPIKNA105X`).
pub(crate) static BAPIKNA105X: StructDef = st(
    "BAPIKNA105X",
    "X Customer Data Structure for BAPIs to Customer",
    &x_fields::OPTIONAL,
);

/// Consumer flag (`BAPIKNA107`).
pub(crate) static BAPIKNA107: StructDef = st(
    "BAPIKNA107",
    "Consumer Flag",
    &[
        F::c("CONSUMER_FLAG", 1, "Customer is a consumer"),
        F::c(
            "CREDIT_CONTROL_FLAG",
            1,
            "Adopt credit control data of the reference customer",
        ),
    ],
);

/// Customer company data (`BAPIKNA106`), 841 characters.
pub(crate) static BAPIKNA106: StructDef = st(
    "BAPIKNA106",
    "Customer Company Data",
    &[
        F::c("TITLE", 30, "Title text"),
        F::c("NAME", 40, "Name 1"),
        F::c("NAME_2", 40, "Name 2"),
        F::c("NAME_3", 40, "Name 3"),
        F::c("NAME_4", 40, "Name 4"),
        F::c("C_O_NAME", 40, "c/o name"),
        F::c("CITY", 40, "City"),
        F::c("DISTRICT", 40, "District"),
        F::c("POSTL_COD1", 10, "City postal code"),
        F::c("POSTL_COD2", 10, "PO Box postal code"),
        F::c("PO_BOX", 10, "PO Box"),
        F::c("PO_BOX_CIT", 40, "PO Box city"),
        F::c("PO_BOX_REG", 3, "Region for PO Box"),
        F::c("POBOX_CTRY", 3, "PO box country"),
        F::c("STREET", 60, "Street"),
        F::c("HOUSE_NO", 10, "House Number"),
        F::c("BUILDING", 20, "Building (Number or Code)"),
        F::c("FLOOR", 10, "Floor in building"),
        F::c("ROOM_NO", 10, "Room or Appartment Number"),
        F::c("COUNTRY", 3, "Country Key"),
        F::c("COUNTRYISO", 2, "Country ISO code"),
        F::c("REGION", 3, "Region (State, Province, County)"),
        F::c(
            "TEL1_NUMBR",
            30,
            "First telephone no.: dialling code+number",
        ),
        F::c("TEL1_EXT", 10, "First Telephone No.: Extension"),
        F::c("FAX_NUMBER", 30, "First fax no.: dialling code+number"),
        F::c("FAX_EXTENS", 10, "First fax no.: extension"),
        F::c("E_MAIL", 241, "E-Mail Address"),
        F::c("LANGU", 1, "Language Key").ddic("LANG"),
        F::c("LANGU_ISO", 2, "Language according to ISO 639"),
        F::c("CURRENCY", 5, "Currency Key").ddic("CUKY"),
        F::c("CURRENCY_ISO", 3, "ISO currency code"),
        F::c("TITLE_KEY", 4, "Form-of-Address Key"),
        F::c(
            "ONLY_CHANGE_COMADDRESS",
            1,
            "Change only the company address",
        ),
    ],
);

/// Change flags for `BAPIKNA106` (`BAPIKNA106X`).
pub(crate) static BAPIKNA106X: StructDef = st(
    "BAPIKNA106X",
    "X Customer Data Structure for BAPIs to Customer",
    &x_fields::COMPANY,
);

mod x_fields {
    //! The `...X` change-flag structures: one CHAR1 per changeable field.
    use super::F;

    const fn x(name: &'static str) -> F {
        F::c(name, 1, "Updated information in related user data field")
    }

    #[rustfmt::skip]
    pub(super) const PERSONAL: [F; 30] = [
        x("TITLE_P"), x("FIRSTNAME"), x("LASTNAME"), x("MIDDLENAME"), x("SECONDNAME"),
        x("DATE_BIRTH"), x("CITY"), x("DISTRICT"), x("POSTL_COD1"), x("POSTL_COD2"),
        x("PO_BOX"), x("PO_BOX_CIT"), x("STREET"), x("HOUSE_NO"), x("BUILDING"), x("FLOOR"),
        x("ROOM_NO"), x("COUNTRY"), x("COUNTRYISO"), x("REGION"), x("TEL1_NUMBR"),
        x("TEL1_EXT"), x("FAX_NUMBER"), x("FAX_EXTENS"), x("E_MAIL"), x("LANGU_P"),
        x("LANGUP_ISO"), x("CURRENCY"), x("CURRENCY_ISO"), x("TITLE_KEY"),
    ];

    #[rustfmt::skip]
    pub(super) const COMPANY: [F; 32] = [
        x("TITLE"), x("NAME"), x("NAME_2"), x("NAME_3"), x("NAME_4"), x("C_O_NAME"),
        x("CITY"), x("DISTRICT"), x("POSTL_COD1"), x("POSTL_COD2"), x("PO_BOX"),
        x("PO_BOX_CIT"), x("PO_BOX_REG"), x("POBOX_CTRY"), x("STREET"), x("HOUSE_NO"), x("BUILDING"), x("FLOOR"), x("ROOM_NO"),
        x("COUNTRY"), x("COUNTRYISO"), x("REGION"), x("TEL1_NUMBR"), x("TEL1_EXT"),
        x("FAX_NUMBER"), x("FAX_EXTENS"), x("E_MAIL"), x("LANGU"), x("LANGU_ISO"),
        x("CURRENCY"), x("CURRENCY_ISO"), x("TITLE_KEY"),
    ];

    #[rustfmt::skip]
    pub(super) const OPTIONAL: [F; 8] = [
        x("TRANSPZONE"), x("CONTROL_ACCOUNT"), x("PMNTTRMS"), x("SHIP_COND"),
        x("DELYG_PLNT"), x("PART_DLV"), x("C_CTR_AREA"), x("TAXJURCODE"),
    ];
}

/// Customer key for reads (`BAPICUSTOMER_ID`).
pub(crate) static BAPICUSTOMER_ID: StructDef = st(
    "BAPICUSTOMER_ID",
    "Customer Key",
    &[
        F::c("CUSTOMER", 10, "Customer Number").alpha(),
        F::c("COMP_CODE", 4, "Company Code"),
    ],
);

/// Customer address as `BAPI_CUSTOMER_GETDETAIL2` returns it (`BAPICUSTOMER_04`).
pub(crate) static BAPICUSTOMER_04: StructDef = st(
    "BAPICUSTOMER_04",
    "Customer Address",
    &[
        F::c("CUSTOMER", 10, "Customer Number").alpha(),
        F::c("FORM_OF_AD", 15, "Title"),
        F::c("NAME", 35, "Name 1"),
        F::c("NAME_2", 35, "Name 2"),
        F::c("NAME_3", 35, "Name 3"),
        F::c("NAME_4", 35, "Name 4"),
        F::c("STREET", 35, "House number and street"),
        F::c("PO_BOX", 10, "PO Box"),
        F::c("CITY", 35, "City"),
        F::c("DISTRICT", 35, "District"),
        F::c("POSTL_CODE", 10, "Postal Code"),
        F::c("PO_BOX_PCD", 10, "P.O. Box Postal Code"),
        F::c("REGION", 3, "Region (State, Province, County)"),
        F::c("COUNTRY", 3, "Country Key"),
        F::c("COUNTRYISO", 2, "Country ISO code"),
        F::c("LANGU", 1, "Language Key").ddic("LANG"),
        F::c("LANGU_ISO", 2, "Language according to ISO 639"),
        F::c("TELEPHONE", 16, "First telephone number"),
        F::c("TELEPHONE2", 16, "Second telephone number"),
        F::c("FAX_NUMBER", 31, "Fax Number"),
        F::c("TELEX_NO", 30, "Telex number"),
        F::c("INTERNET", 130, "Internet mail (SMTP) address"),
        F::c("CURRENCY", 5, "Currency Key").ddic("CUKY"),
        F::c("CURRENCY_ISO", 3, "ISO currency code"),
        F::c("ADDRESS", 10, "Address"),
    ],
);

/// Customer general data as `BAPI_CUSTOMER_GETDETAIL2` returns it (`BAPICUSTOMER_KNA1`).
pub(crate) static BAPICUSTOMER_KNA1: StructDef = st(
    "BAPICUSTOMER_KNA1",
    "Customer General Data",
    &[
        F::c(
            "ACC_1_TIME",
            1,
            "Indicator: Is the account a one-time account?",
        ),
        F::c("ORDR_BLK_G", 2, "Central order block for customer"),
        F::c("EXPR_STAT", 25, "Express train station"),
        F::c("TRAIN_STAT", 25, "Train station"),
        F::n("LOC_NO_1", 7, "International location number (part 1)"),
        F::n("LOC_NO_2", 5, "International location number (Part 2)"),
        F::c("AUTH_GROUP", 4, "Authorization Group"),
        F::c("INDUSTRY", 4, "Industry key"),
        F::n(
            "CHK_DIGIT",
            1,
            "Check digit for the international location number",
        ),
        F::c("DATA_LINE", 14, "Data communication line no."),
        F::d("CREAT_DATE", "Record Created On"),
        F::c("ENTERED_BY", 12, "Name of Person who Created the Object"),
        F::c("UNLOAD_PT", 1, "Indicator: Unloading points exist"),
        F::c("BILL_BLK_G", 2, "Central billing block for customer"),
        F::c(
            "FISK_ADDR",
            10,
            "Account number of the master record with the fiscal address",
        ),
        F::c("WORK_TIME", 2, "Working Time Calendar"),
        F::c("ALT_PAYER", 10, "Account Number of an Alternative Payer"),
        F::c("GROUPKEY", 10, "Group key"),
        F::c("ACCNT_GRP", 4, "Customer Account Group"),
        F::c("CLASSIFIC", 2, "Customer Classification"),
        F::c("VENDOR_NO", 10, "Account Number of Supplier"),
        F::c("DELI_BLK_G", 2, "Central delivery block for the customer"),
        F::c("LOC_CODE", 10, "City Coordinates"),
        F::c("DEL_FLAG_G", 1, "Central Deletion Flag for Master Record"),
        F::c("NIELSEN_ID", 2, "Nielsen ID"),
        F::c("COUNTY_CDE", 3, "County Code"),
        F::c("REG_MARKET", 5, "Regional market"),
        F::c("PSTG_BLK_G", 1, "Central posting block"),
        F::c("TAX_NO_1", 16, "Tax Number 1"),
        F::c("TAX_NO_2", 11, "Tax Number 2"),
        F::c(
            "EQUAL_TAX",
            1,
            "Indicator: Business Partner Subject to Equalization Tax?",
        ),
        F::c("SLS_PUR_TX", 1, "Liable for VAT"),
        F::c("TELEBOX", 15, "Telebox number"),
        F::c(
            "TRANSPZONE",
            10,
            "Transportation zone to or from which the goods are delivered",
        ),
        F::c("VAT_REG_NO", 20, "VAT Registration Number"),
    ],
);

/// Customer company code data as `BAPI_CUSTOMER_GETDETAIL2` returns it
/// (`BAPICUSTOMER_05`).
pub(crate) static BAPICUSTOMER_05: StructDef = st(
    "BAPICUSTOMER_05",
    "Customer Company Code Data",
    &[
        F::c("CUSTOMER", 10, "Customer Number").alpha(),
        F::c("COMP_CODE", 4, "Company Code"),
        F::c("AUTH_GROUP", 4, "Authorization Group"),
        F::d("CREAT_DATE", "Record Created On"),
        F::c("ENTERED_BY", 12, "Name of Person who Created the Object"),
        F::c("RECON_ACCT", 10, "Reconciliation Account in General Ledger").alpha(),
        F::c(
            "SORT_KEY",
            3,
            "Key for sorting according to assignment numbers",
        ),
        F::c("PMNTTRMS", 4, "Terms of Payment Key"),
        F::c(
            "PYMT_METH",
            10,
            "List of the Payment Methods to be Considered",
        ),
        F::c("DUNN_PROC", 4, "Dunning Procedure"),
        F::c("PSTG_BLK_C", 1, "Posting block for company code"),
        F::c(
            "DEL_FLAG_C",
            1,
            "Deletion Flag for Master Record (Company Code Level)",
        ),
        F::c("CLERK_ABB", 2, "Accounting clerk abbreviation"),
    ],
);

/// Customer bank details (`BAPICUSTOMER_02`).
pub(crate) static BAPICUSTOMER_02: StructDef = st(
    "BAPICUSTOMER_02",
    "Customer Bank Details",
    &[
        F::c("BANK_CTRY", 3, "Bank country key"),
        F::c("BANK_KEY", 15, "Bank Keys"),
        F::c("BANK_ACCT", 18, "Bank account number"),
        F::c("CTRL_KEY", 2, "Bank Control Key"),
        F::c("PARTNER_BK", 4, "Partner Bank Type"),
        F::c(
            "COLL_AUTH",
            1,
            "Indicator: Is there collection authorization?",
        ),
        F::c("BANK_REF", 20, "Reference specifications for bank details"),
        F::c("IBAN", 34, "IBAN (International Bank Account Number)"),
    ],
);

/// A range of customer numbers (`BAPICUSTOMER_IDRANGE`), 23 characters.
pub(crate) static BAPICUSTOMER_IDRANGE: StructDef = st(
    "BAPICUSTOMER_IDRANGE",
    "Range Table of Customer Numbers",
    &[
        F::c(
            "SIGN",
            1,
            "Inclusion/exclusion criterion SIGN for range tables",
        ),
        F::c("OPTION", 2, "Selection operator OPTION for range tables"),
        F::c("LOW", 10, "Customer Number").alpha(),
        F::c("HIGH", 10, "Customer Number").alpha(),
    ],
);

/// Address data per customer as `BAPI_CUSTOMER_GETLIST` returns it
/// (`BAPICUSTOMER_ADDRESSDATA`).
pub(crate) static BAPICUSTOMER_ADDRESSDATA: StructDef = st(
    "BAPICUSTOMER_ADDRESSDATA",
    "Customer Address Data",
    &[
        F::c("CUSTOMER", 10, "Customer Number").alpha(),
        F::c("COUNTRY", 3, "Country Key"),
        F::c("COUNTRYISO", 2, "Country ISO code"),
        F::c("NAME", 35, "Name 1"),
        F::c("NAME_2", 35, "Name 2"),
        F::c("CITY", 35, "City"),
        F::c("POSTL_CODE", 10, "Postal Code"),
        F::c("REGION", 3, "Region (State, Province, County)"),
        F::c("STREET", 35, "House number and street"),
        F::c("PO_BOX", 10, "PO Box"),
        F::c("TEL1_NUMBR", 16, "First telephone number"),
        F::c("FAX_NUMBER", 31, "Fax Number"),
        F::c("LANGU", 1, "Language Key").ddic("LANG"),
        F::c("LANGU_ISO", 2, "Language according to ISO 639"),
        F::c("SORT1", 20, "Search term 1"),
        F::c("ADDRESS", 10, "Address"),
    ],
);

/// Special data per customer as `BAPI_CUSTOMER_GETLIST` returns it
/// (`BAPICUSTOMER_SPECIALDATA`), 11 characters.
pub(crate) static BAPICUSTOMER_SPECIALDATA: StructDef = st(
    "BAPICUSTOMER_SPECIALDATA",
    "Special Customer Data",
    &[
        F::c("CUSTOMER", 10, "Customer Number").alpha(),
        F::c(
            "ACC_1_TIME",
            1,
            "Indicator: Is the account a one-time account?",
        ),
    ],
);
