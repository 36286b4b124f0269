//! The interfaces of every function module the simulator implements, as SAP
//! declares them (parameter names, reference types, optional flags, defaults,
//! exceptions). `RFC_GET_FUNCTION_INTERFACE` answers from here and every call is
//! validated against it.

use super::structures as s;
use super::tables as t;
use super::types::{FieldDef as F, FunctionDef, ParamDef as P};

const CUSTOMER: F = F::c("CUSTOMER", 10, "Customer Number").alpha();
const FLAG: F = F::c("FLAG", 1, "General Flag");

/// Every simulated function module, sorted by name.
pub(crate) static FUNCTIONS: &[&FunctionDef] = &[
    &BAPI_CUSTOMER_CHANGEFROMDATA1,
    &BAPI_CUSTOMER_CREATEFROMDATA1,
    &BAPI_CUSTOMER_GETDETAIL2,
    &BAPI_CUSTOMER_GETLIST,
    &BAPI_TRANSACTION_COMMIT,
    &BAPI_TRANSACTION_ROLLBACK,
    &DDIF_FIELDINFO_GET,
    &RFC_FUNCTION_SEARCH,
    &RFC_GET_FUNCTION_INTERFACE,
    &RFC_PING,
    &RFC_READ_TABLE,
    &RFC_SYSTEM_INFO,
    &STFC_CONNECTION,
    &super::types_echo::Z_SAPBRIDGE_TYPES_ECHO,
];

/// The interface of `name` (upper case), if the simulator implements it.
pub(crate) fn lookup(name: &str) -> Option<&'static FunctionDef> {
    FUNCTIONS.iter().copied().find(|f| f.name == name)
}

static STFC_CONNECTION: FunctionDef = FunctionDef {
    name: "STFC_CONNECTION",
    params: &[
        P::imp(
            "REQUTEXT",
            "SY",
            F::c("LISEL", 255, "Interact.: Contents of the selected line"),
        )
        .text("Text to be sent"),
        P::exp(
            "ECHOTEXT",
            "SY",
            F::c("LISEL", 255, "Interact.: Contents of the selected line"),
        )
        .text("Echo of the sent text"),
        P::exp(
            "RESPTEXT",
            "SY",
            F::c("LISEL", 255, "Interact.: Contents of the selected line"),
        )
        .text("Response text with system information"),
    ],
    exceptions: &[],
};

static RFC_PING: FunctionDef = FunctionDef {
    name: "RFC_PING",
    params: &[],
    exceptions: &[],
};

static RFC_SYSTEM_INFO: FunctionDef = FunctionDef {
    name: "RFC_SYSTEM_INFO",
    params: &[
        P::exp(
            "CURRENT_RESOURCES",
            "SY",
            F::i("INDEX", "Currently available resources"),
        ),
        P::exp("FAST_SER_VERS", "", F::i("", "Fast serialization version")),
        P::exp(
            "MAXIMAL_RESOURCES",
            "SY",
            F::i("INDEX", "Maximum resources"),
        ),
        P::exp(
            "RECOMMENDED_DELAY",
            "SY",
            F::i("INDEX", "Recommended delay"),
        ),
        P::exp_struct("RFCSI_EXPORT", &t::RFCSI),
        P::exp("S4_HANA", "", F::c("", 1, "S/4HANA system")),
    ],
    exceptions: &[],
};

static BAPI_TRANSACTION_COMMIT: FunctionDef = FunctionDef {
    name: "BAPI_TRANSACTION_COMMIT",
    params: &[
        P::imp(
            "WAIT",
            "BAPITA",
            F::c("WAIT", 1, "Use of Command `COMMIT AND WAIT`"),
        )
        .opt(),
        P::exp_struct("RETURN", &s::BAPIRET2),
    ],
    exceptions: &[],
};

static BAPI_TRANSACTION_ROLLBACK: FunctionDef = FunctionDef {
    name: "BAPI_TRANSACTION_ROLLBACK",
    params: &[P::exp_struct("RETURN", &s::BAPIRET2)],
    exceptions: &[],
};

static BAPI_CUSTOMER_CREATEFROMDATA1: FunctionDef = FunctionDef {
    name: "BAPI_CUSTOMER_CREATEFROMDATA1",
    params: &[
        P::imp_struct("PI_PERSONALDATA", &s::BAPIKNA101_1).text("Customer Personal Data"),
        P::imp_struct("PI_OPT_PERSONALDATA", &s::BAPIKNA105)
            .opt()
            .text("Optional Customer Personal Data"),
        P::imp_struct("PI_COMPANYDATA", &s::BAPIKNA106)
            .opt()
            .text("Customer Company Data"),
        P::imp_struct("PI_OPT_COMPANYDATA", &s::BAPIKNA105)
            .opt()
            .text("Optional Customer Company Data"),
        P::imp(
            "PI_CONSUMEREN",
            "BAPIKNA107",
            F::c("CONSUMER_FLAG", 1, "Customer is consumer"),
        )
        .opt(),
        P::imp_struct("PI_COPYREFERENCE", &s::BAPIKNA102).text("Reference Data"),
        P::imp(
            "PI_CREDIT_CONTROL_FLAG",
            "BAPIKNA107",
            F::c("CREDIT_CONTROL_FLAG", 1, "Adopt credit control data"),
        )
        .opt(),
        P::exp("CUSTOMERNO", "BAPIKNA103", CUSTOMER).text("New Customer Number"),
        P::exp_struct("RETURN", &s::BAPIRETURN1).text("Return Value"),
    ],
    exceptions: &[],
};

static BAPI_CUSTOMER_CHANGEFROMDATA1: FunctionDef = FunctionDef {
    name: "BAPI_CUSTOMER_CHANGEFROMDATA1",
    params: &[
        P::imp("CUSTOMERNO", "BAPIKNA103", CUSTOMER)
            .text("Customer Number of the Customer to Be Changed"),
        P::imp(
            "PI_SALESORG",
            "BAPIKNA102",
            F::c("SALESORG", 4, "Sales Organization"),
        ),
        P::imp(
            "PI_DISTR_CHAN",
            "BAPIKNA102",
            F::c("DISTR_CHAN", 2, "Distribution Channel"),
        )
        .opt(),
        P::imp("PI_DIVISION", "BAPIKNA102", F::c("DIVISION", 2, "Division")).opt(),
        P::imp_struct("PI_PERSONALDATA", &s::BAPIKNA101_1).text("Customer Personal Data"),
        P::imp_struct("PI_PERSONALDATAX", &s::BAPIKNA101_1X)
            .opt()
            .text("Customer Personal Data Structure"),
        P::imp_struct("PI_OPT_PERSONALDATA", &s::BAPIKNA105)
            .opt()
            .text("Optional Customer Personal Data"),
        P::imp_struct("PI_OPT_PERSONALDATAX", &s::BAPIKNA105X)
            .opt()
            .text("Optional Customer Personal Data Structure"),
        P::imp_struct("PI_COMPANYDATA", &s::BAPIKNA106)
            .opt()
            .text("Customer Company Data"),
        P::imp_struct("PI_COMPANYDATAX", &s::BAPIKNA106X)
            .opt()
            .text("Customer Company Data Structure"),
        P::imp_struct("PI_OPT_COMPANYDATA", &s::BAPIKNA105)
            .opt()
            .text("Optional Customer Company Data"),
        P::imp_struct("PI_OPT_COMPANYDATAX", &s::BAPIKNA105X)
            .opt()
            .text("Optional Customer Company Data Structure"),
        P::imp(
            "PI_CONSUMEREN",
            "BAPIKNA107",
            F::c("CONSUMER_FLAG", 1, "Customer is consumer"),
        )
        .opt(),
        P::exp_struct("PE_PERSONALDATA", &s::BAPIKNA101_1).text("Changed Personal Data"),
        P::exp_struct("PE_OPT_PERSONALDATA", &s::BAPIKNA105).text("Changed Optional Personal Data"),
        P::exp_struct("PE_COMPANYDATA", &s::BAPIKNA106).text("Changed Company Data"),
        P::exp_struct("PE_OPT_COMPANYDATA", &s::BAPIKNA105).text("Changed Optional Company Data"),
        P::exp_struct("RETURN", &s::BAPIRETURN1).text("Return Value"),
    ],
    exceptions: &[],
};

static BAPI_CUSTOMER_GETDETAIL2: FunctionDef = FunctionDef {
    name: "BAPI_CUSTOMER_GETDETAIL2",
    params: &[
        P::imp("CUSTOMERNO", "BAPICUSTOMER_ID", CUSTOMER).text("Customer Number"),
        P::imp(
            "COMPANYCODE",
            "BAPICUSTOMER_ID",
            F::c("COMP_CODE", 4, "Company Code"),
        )
        .opt(),
        P::exp_struct("CUSTOMERADDRESS", &s::BAPICUSTOMER_04).text("Customer Address"),
        P::exp_struct("CUSTOMERGENERALDETAIL", &s::BAPICUSTOMER_KNA1).text("Customer General Data"),
        P::exp_struct("CUSTOMERCOMPANYDETAIL", &s::BAPICUSTOMER_05)
            .text("Customer Company Code Data"),
        P::exp_struct("RETURN", &s::BAPIRET1).text("Return Messages"),
        P::table("CUSTOMERBANKDETAIL", &s::BAPICUSTOMER_02)
            .opt()
            .text("Customer Bank Details"),
    ],
    exceptions: &[],
};

static BAPI_CUSTOMER_GETLIST: FunctionDef = FunctionDef {
    name: "BAPI_CUSTOMER_GETLIST",
    params: &[
        P::imp(
            "MAXROWS",
            "BAPIF4A",
            F::i("MAX_ROWS", "Maximum number of customers"),
        )
        .default("0"),
        P::imp(
            "CPDONLY",
            "BAPICUSTOMER_CPD",
            F::c(
                "CPD_ONLY",
                1,
                "Control indicator: Read one-time customers only",
            ),
        )
        .opt(),
        P::exp_struct("RETURN", &s::BAPIRETURN1).text("Return parameter"),
        P::table("IDRANGE", &s::BAPICUSTOMER_IDRANGE).text("Range Table of Customer Numbers"),
        P::table("ADDRESSDATA", &s::BAPICUSTOMER_ADDRESSDATA)
            .opt()
            .text("Customer Address Data"),
        P::table("SPECIALDATA", &s::BAPICUSTOMER_SPECIALDATA)
            .opt()
            .text("Special Customer Data"),
    ],
    exceptions: &[],
};

static RFC_READ_TABLE: FunctionDef = FunctionDef {
    name: "RFC_READ_TABLE",
    params: &[
        P::imp("QUERY_TABLE", "DD02L", F::c("TABNAME", 30, "Table Name")),
        P::imp("DELIMITER", "SONV", FLAG).default("SPACE"),
        P::imp("NO_DATA", "SONV", FLAG).default("SPACE"),
        P::imp("ROWSKIPS", "SOID", F::i("ACCNT", "Rows to skip")).default("0"),
        P::imp("ROWCOUNT", "SOID", F::i("ACCNT", "Maximum rows to read")).default("0"),
        P::table("OPTIONS", &t::RFC_DB_OPT),
        P::table("FIELDS", &t::RFC_DB_FLD),
        P::table("DATA", &t::TAB512),
    ],
    exceptions: &[
        "TABLE_NOT_AVAILABLE",
        "TABLE_WITHOUT_DATA",
        "OPTION_NOT_VALID",
        "FIELD_NOT_VALID",
        "NOT_AUTHORIZED",
        "DATA_BUFFER_EXCEEDED",
    ],
};

static RFC_FUNCTION_SEARCH: FunctionDef = FunctionDef {
    name: "RFC_FUNCTION_SEARCH",
    params: &[
        P::imp(
            "FUNCNAME",
            "RS38L",
            F::c("NAME", 30, "Name of Function Module"),
        )
        .opt()
        .text("Function module name (pattern with *)"),
        P::imp("GROUPNAME", "RS38L", F::c("AREA", 26, "Function group"))
            .opt()
            .text("Function group (pattern with *)"),
        P::imp(
            "LANGUAGE",
            "SY",
            F::c("LANGU", 1, "Language Key").ddic("LANG"),
        )
        .default("SY-LANGU")
        .text("Language of the short texts"),
        P::table("FUNCTIONS", &t::RFCFUNC).text("Function modules found"),
    ],
    exceptions: &["NOTHING_SPECIFIED", "NO_FUNCTION_FOUND"],
};

static RFC_GET_FUNCTION_INTERFACE: FunctionDef = FunctionDef {
    name: "RFC_GET_FUNCTION_INTERFACE",
    params: &[
        P::imp(
            "FUNCNAME",
            "RS38L",
            F::c("NAME", 30, "Name of Function Module"),
        ),
        P::imp(
            "LANGUAGE",
            "SY",
            F::c("LANGU", 1, "Language Key").ddic("LANG"),
        )
        .default("SPACE"),
        P::imp(
            "NONE_UNICODE_LENGTH",
            "",
            F::c("", 1, "Lengths in a non-Unicode system"),
        )
        .default("SPACE"),
        P::exp(
            "REMOTE_BASXML_SUPPORTED",
            "RS38L",
            F::c("BASXML_ENABLED", 1, "basXML"),
        ),
        P::exp("REMOTE_CALL", "RS38L", F::c("REMOTE", 1, "Remote-enabled")),
        P::exp("UPDATE_TASK", "RS38L", F::c("UTASK", 1, "Update module")),
        P::table("PARAMS", &t::RFC_FUNINT),
    ],
    exceptions: &["FU_NOT_FOUND", "NAMETAB_FAULT"],
};

static DDIF_FIELDINFO_GET: FunctionDef = FunctionDef {
    name: "DDIF_FIELDINFO_GET",
    params: &[
        P::imp(
            "TABNAME",
            "DDOBJNAME",
            F::c("", 30, "Name of an ABAP Dictionary object"),
        ),
        P::imp("FIELDNAME", "DFIES", F::c("FIELDNAME", 30, "Field Name")).default("SPACE"),
        P::imp("LANGU", "SY", F::c("LANGU", 1, "Language Key").ddic("LANG")).default("SY-LANGU"),
        P::imp(
            "LFIELDNAME",
            "DFIES",
            F::c("LFIELDNAME", 132, "Long field name"),
        )
        .default("SPACE"),
        P::imp(
            "ALL_TYPES",
            "DDBOOL_D",
            F::c("", 1, "Also read non-table types"),
        )
        .default("SPACE"),
        P::imp(
            "GROUP_NAMES",
            "DDBOOL_D",
            F::c("", 1, "Also return group names"),
        )
        .default("SPACE"),
        P::imp("DO_NOT_WRITE", "DDBOOL_D", F::c("", 1, "Do not write")).default("SPACE"),
        P::exp(
            "DDOBJTYPE",
            "DD02V",
            F::c("TABCLASS", 8, "Kind of the object"),
        ),
        P::exp_struct("DFIES_WA", &t::DFIES).text("Single field information"),
        P::table("DFIES_TAB", &t::DFIES).opt().text("Field list"),
        P::table("FIXED_VALUES", &t::DDFIXVALUES)
            .opt()
            .text("Fixed values of the domain"),
    ],
    exceptions: &["NOT_FOUND", "INTERNAL_ERROR"],
};
