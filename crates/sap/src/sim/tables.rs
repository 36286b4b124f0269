//! The transparent table `KNA1` and the Basis structures of the generic functions
//! (`RFCSI`, `RFC_DB_OPT`, `RFC_DB_FLD`, `TAB512`, `RFC_FUNINT`, `RFCFUNC`, `DFIES`,
//! `DDFIXVALUES`), plus [`lookup`], the simulator's data dictionary.

use super::structures as s;
use super::types::{FieldDef as F, StructDef, StructKind};

const fn st(name: &'static str, text: &'static str, fields: &'static [F]) -> StructDef {
    StructDef {
        name,
        kind: StructKind::Structure,
        text,
        fields,
    }
}

/// General data in customer master (`KNA1`), in SAP's component order. The
/// components after `LZONE` that the simulator never fills are left out; the ones
/// declared are enough to make a `RFC_READ_TABLE` without a field list exceed the
/// 512-character line, as it does on a real system.
pub(crate) static KNA1: StructDef = StructDef {
    name: "KNA1",
    kind: StructKind::Table,
    text: "General Data in Customer Master",
    fields: &[
        F::c("MANDT", 3, "Client").ddic("CLNT").key(),
        F::c("KUNNR", 10, "Customer Number").alpha().key(),
        F::c("LAND1", 3, "Country Key"),
        F::c("NAME1", 35, "Name 1"),
        F::c("NAME2", 35, "Name 2"),
        F::c("ORT01", 35, "City"),
        F::c("PSTLZ", 10, "Postal Code"),
        F::c("REGIO", 3, "Region (State, Province, County)"),
        F::c("SORTL", 10, "Sort field"),
        F::c("STRAS", 35, "House number and street"),
        F::c("TELF1", 16, "First telephone number"),
        F::c("TELFX", 31, "Fax Number"),
        F::c("XCPDK", 1, "Indicator: Is the account a one-time account?"),
        F::c("ADRNR", 10, "Address"),
        F::c("MCOD1", 25, "Search term for matchcode search"),
        F::c("MCOD2", 25, "Search term for matchcode search"),
        F::c("MCOD3", 25, "Search term for matchcode search"),
        F::c("ANRED", 15, "Title"),
        F::c("AUFSD", 2, "Central order block for customer"),
        F::c("BAHNE", 25, "Express train station"),
        F::c("BAHNS", 25, "Train station"),
        F::n("BBBNR", 7, "International location number (part 1)"),
        F::n("BBSNR", 5, "International location number (Part 2)"),
        F::c("BEGRU", 4, "Authorization Group"),
        F::c("BRSCH", 4, "Industry key"),
        F::n(
            "BUBKZ",
            1,
            "Check digit for the international location number",
        ),
        F::c("DATLT", 14, "Data communication line no."),
        F::d("ERDAT", "Date on which the Record Was Created"),
        F::c("ERNAM", 12, "Name of Person who Created the Object"),
        F::c("EXABL", 1, "Indicator: Unloading points exist"),
        F::c("FAKSD", 2, "Central billing block for customer"),
        F::c(
            "FISKN",
            10,
            "Account number of the master record with the fiscal address",
        ),
        F::c("KNAZK", 2, "Working Time Calendar"),
        F::c("KNRZA", 10, "Account Number of an Alternative Payer"),
        F::c("KONZS", 10, "Group key"),
        F::c("KTOKD", 4, "Customer Account Group"),
        F::c("KUKLA", 2, "Customer Classification"),
        F::c("LIFNR", 10, "Account Number of Vendor or Creditor"),
        F::c("LIFSD", 2, "Central delivery block for the customer"),
        F::c("LOCCO", 10, "City Coordinates"),
        F::c("LOEVM", 1, "Central Deletion Flag for Master Record"),
        F::c("NAME3", 35, "Name 3"),
        F::c("NAME4", 35, "Name 4"),
        F::c("NIELS", 2, "Nielsen ID"),
        F::c("ORT02", 35, "District"),
        F::c("PFACH", 10, "PO Box"),
        F::c("PSTL2", 10, "P.O. Box Postal Code"),
        F::c("COUNC", 3, "County Code"),
        F::c("CITYC", 4, "City Code"),
        F::c("RPMKR", 5, "Regional market"),
        F::c("SPERR", 1, "Central posting block"),
        F::c("SPRAS", 1, "Language Key").ddic("LANG"),
        F::c("STCD1", 16, "Tax Number 1"),
        F::c("STCD2", 11, "Tax Number 2"),
        F::c(
            "STKZA",
            1,
            "Indicator: Business Partner Subject to Equalization Tax?",
        ),
        F::c("STKZU", 1, "Liable for VAT"),
        F::c("TELBX", 15, "Telebox number"),
        F::c("TELF2", 16, "Second telephone number"),
        F::c("TELTX", 30, "Teletex number"),
        F::c("TELX1", 30, "Telex number"),
        F::c(
            "LZONE",
            10,
            "Transportation zone to or from which the goods are delivered",
        ),
        F::c("STCEG", 20, "VAT Registration Number"),
    ],
};

/// RFC system information (`RFCSI`).
pub(crate) static RFCSI: StructDef = st(
    "RFCSI",
    "RFC: System Information",
    &[
        F::c("RFCPROTO", 3, "RFC Log Version"),
        F::c("RFCCHARTYP", 4, "Character Set"),
        F::c("RFCINTTYP", 3, "Integer Format"),
        F::c("RFCFLOTYP", 3, "Floating Point Format"),
        F::c(
            "RFCDEST",
            32,
            "Logical Destination (Specified in Function Call)",
        ),
        F::c("RFCHOST", 8, "Host Name"),
        F::c("RFCSYSID", 8, "R/3 System, Name of R/3 System"),
        F::c("RFCDATABS", 8, "Name of the Database"),
        F::c("RFCDBHOST", 32, "Name of Central Database System"),
        F::c("RFCDBSYS", 10, "System: Database System"),
        F::c("RFCSAPRL", 4, "System: SAP Release"),
        F::c("RFCMACH", 5, "Machine ID"),
        F::c("RFCOPSYS", 10, "System: Operating System"),
        F::c(
            "RFCTZONE",
            6,
            "System: Time Zone Difference from UTC in Seconds",
        ),
        F::c("RFCDAYST", 1, "Daylight Saving Time Flag"),
        F::c("RFCIPADDR", 15, "IP Address"),
        F::c("RFCKERNRL", 4, "System: SAP Release of Kernel"),
        F::c("RFCHOST2", 32, "Name of Application Server"),
        F::c("RFCSI_RESV", 12, "Reserve Field"),
        F::c("RFCIPV6ADDR", 45, "IPv6 Address"),
    ],
);

/// One line of a WHERE clause for `RFC_READ_TABLE` (`RFC_DB_OPT`).
pub(crate) static RFC_DB_OPT: StructDef = st(
    "RFC_DB_OPT",
    "RFC Table Read: Select Options",
    &[F::c("TEXT", 72, "Text field")],
);

/// One selected field for `RFC_READ_TABLE` (`RFC_DB_FLD`).
pub(crate) static RFC_DB_FLD: StructDef = st(
    "RFC_DB_FLD",
    "RFC Table Read: Description of Fields to Retrieve",
    &[
        F::c("FIELDNAME", 30, "Field Name"),
        F::n("OFFSET", 6, "Offset of a field"),
        F::n("LENGTH", 6, "Length (No. of Characters)"),
        F::c("TYPE", 1, "ABAP data type (C,D,N,...)"),
        F::c("FIELDTEXT", 60, "Short Description of Repository Objects"),
    ],
);

/// A 512-character data line (`TAB512`).
pub(crate) static TAB512: StructDef = st(
    "TAB512",
    "DATA, 512 Characters",
    &[F::c("WA", 512, "Character field, length 512")],
);

/// One function module found by `RFC_FUNCTION_SEARCH` (`RFCFUNC`).
pub(crate) static RFCFUNC: StructDef = st(
    "RFCFUNC",
    "Function module search result",
    &[
        F::c("FUNCNAME", 30, "Name of Function Module"),
        F::c("GROUPNAME", 26, "Function group"),
        F::c("APPL", 1, "Application"),
        F::c("HOST", 32, "Host name"),
        F::c("STEXT", 74, "Short text for function module"),
    ],
);

/// One row of a function interface (`RFC_FUNINT`).
pub(crate) static RFC_FUNINT: StructDef = st(
    "RFC_FUNINT",
    "Interface of a function module",
    &[
        F::c("PARAMCLASS", 1, "Parameter type"),
        F::c("PARAMETER", 30, "Parameter name"),
        F::c("TABNAME", 30, "Table Name"),
        F::c("FIELDNAME", 30, "Field Name"),
        F::c("EXID", 1, "ABAP data type (C,D,N,...)"),
        F::i("POSITION", "Position of field in structure (from 1)"),
        F::i(
            "OFFSET",
            "Field offset from beginning of structure (from 0)",
        ),
        F::i("INTLENGTH", "Internal length of field"),
        F::i("DECIMALS", "Number of decimal places"),
        F::c("DEFAULT", 21, "Default value for import parameter"),
        F::c("PARAMTEXT", 79, "Short text"),
        F::c("OPTIONAL", 1, "Optional parameter"),
    ],
);

/// DD interface: table fields for `DDIF_FIELDINFO_GET` (`DFIES`, the commonly
/// used components).
pub(crate) static DFIES: StructDef = st(
    "DFIES",
    "DD Interface: Table Fields for DDIF_FIELDINFO_GET",
    &[
        F::c("TABNAME", 30, "Table Name"),
        F::c("FIELDNAME", 30, "Field Name"),
        F::c("LANGU", 1, "Language Key").ddic("LANG"),
        F::n("POSITION", 4, "Position of the field in the table"),
        F::n("OFFSET", 6, "Offset of a field"),
        F::c("DOMNAME", 30, "Domain name"),
        F::c("ROLLNAME", 30, "Data element (semantic domain)"),
        F::c("CHECKTABLE", 30, "Table Name"),
        F::n("LENG", 6, "Length (No. of Characters)"),
        F::n("INTLEN", 6, "Internal Length in Bytes"),
        F::n("OUTPUTLEN", 6, "Output Length"),
        F::n("DECIMALS", 6, "Number of Decimal Places"),
        F::c("DATATYPE", 4, "Data Type in ABAP Dictionary"),
        F::c("INTTYPE", 1, "ABAP data type (C,D,N,...)"),
        F::c("CONVEXIT", 5, "Conversion Routine"),
        F::c("FIELDTEXT", 60, "Short Description of Repository Objects"),
        F::c("REPTEXT", 55, "Heading"),
        F::c("SCRTEXT_S", 10, "Short Field Label"),
        F::c("SCRTEXT_M", 20, "Medium Field Label"),
        F::c("SCRTEXT_L", 40, "Long Field Label"),
        F::c("KEYFLAG", 1, "Identifies a key field of a table"),
        F::c("LOWERCASE", 1, "Lowercase letters allowed/not allowed"),
        F::c("COMPTYPE", 1, "DD: Component Type"),
        F::c("LFIELDNAME", 132, "Field name for the long field"),
    ],
);

/// Fixed domain values (`DDFIXVALUES`).
pub(crate) static DDFIXVALUES: StructDef = st(
    "DDFIXVALUES",
    "DD Interface: Table of Fixed Domain Values",
    &[
        F::c("LOW", 10, "Values for Domains: Single Value / Upper Limit"),
        F::c("HIGH", 10, "Values for domains, upper limit"),
        F::c("OPTION", 2, "Option for domain fixed values"),
        F::c("DDLANGUAGE", 1, "Language Key").ddic("LANG"),
        F::c("DDTEXT", 60, "Short Text for Fixed Values"),
    ],
);

/// Every structure and table the simulator knows, for `DDIF_FIELDINFO_GET`.
pub(crate) static ALL: &[&StructDef] = &[
    &KNA1,
    &RFCSI,
    &RFC_DB_OPT,
    &RFC_DB_FLD,
    &TAB512,
    &RFC_FUNINT,
    &RFCFUNC,
    &DFIES,
    &DDFIXVALUES,
    &s::BAPIRET1,
    &s::BAPIRET2,
    &s::BAPIRETURN1,
    &s::BAPIKNA101_1,
    &s::BAPIKNA101_1X,
    &s::BAPIKNA102,
    &s::BAPIKNA103,
    &s::BAPIKNA105,
    &s::BAPIKNA105X,
    &s::BAPIKNA106,
    &s::BAPIKNA106X,
    &s::BAPIKNA107,
    &s::BAPICUSTOMER_ID,
    &s::BAPICUSTOMER_04,
    &s::BAPICUSTOMER_KNA1,
    &s::BAPICUSTOMER_05,
    &s::BAPICUSTOMER_02,
    &s::BAPICUSTOMER_IDRANGE,
    &s::BAPICUSTOMER_ADDRESSDATA,
    &s::BAPICUSTOMER_SPECIALDATA,
    &super::types_echo::ZSAPBRIDGE_TYPES,
];

/// The structure or table called `name` (upper case), if the simulator knows it.
pub(crate) fn lookup(name: &str) -> Option<&'static StructDef> {
    ALL.iter().copied().find(|d| d.name == name)
}
