//! The stub's process-wide state: one tokio runtime to drive the simulator, the
//! simulators opened so far (by state file), the user locks, the cached function
//! descriptions (like the SDK's repository cache, never freed), and [`Conn`], one
//! connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use sapbridge_nwrfc::RfcErrorInfo;
use sapbridge_nwrfc::ffi::{RFC_DIRECTION, RFC_ERROR_GROUP, RFC_RC, RFCTYPE};
use sapbridge_sap::sim::{SIM_PASSWORD, SIM_USER, SimOptions, SimSession, Simulator, UserLocks};
use sapbridge_sap::{ErrorGroup, Parameters, RfcError, SapConnection};
use serde_json::Value;

use crate::container::{FieldD, FuncD, ParamMeta, TypeD, is_char_like};

/// Process-wide state.
pub(crate) struct Stub {
    runtime: tokio::runtime::Runtime,
    systems: Mutex<HashMap<PathBuf, Simulator>>,
    pub(crate) locks: UserLocks,
    functions: Mutex<HashMap<String, &'static FuncD>>,
    types: Mutex<HashMap<String, &'static TypeD>>,
}

/// The stub, created on first use.
pub(crate) fn stub() -> &'static Stub {
    static STUB: OnceLock<Stub> = OnceLock::new();
    STUB.get_or_init(|| Stub {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .expect("the stub's runtime starts"),
        systems: Mutex::default(),
        locks: UserLocks::default(),
        functions: Mutex::default(),
        types: Mutex::default(),
    })
}

/// An SDK-style error.
pub(crate) fn err(
    code: RFC_RC,
    group: RFC_ERROR_GROUP,
    key: &str,
    message: impl Into<String>,
) -> RfcErrorInfo {
    let mut e = RfcErrorInfo::local(code, key, message);
    e.group = group;
    e
}

/// The simulator's error in the SDK's terms.
pub(crate) fn from_sim(e: &RfcError) -> RfcErrorInfo {
    let (code, group) = match e.group {
        ErrorGroup::AbapApplicationFailure => (
            RFC_RC::ABAP_EXCEPTION,
            RFC_ERROR_GROUP::ABAP_APPLICATION_FAILURE,
        ),
        ErrorGroup::AbapRuntimeFailure => (
            RFC_RC::ABAP_RUNTIME_FAILURE,
            RFC_ERROR_GROUP::ABAP_RUNTIME_FAILURE,
        ),
        ErrorGroup::LogonFailure => (RFC_RC::LOGON_FAILURE, RFC_ERROR_GROUP::LOGON_FAILURE),
        ErrorGroup::CommunicationFailure => (
            RFC_RC::COMMUNICATION_FAILURE,
            RFC_ERROR_GROUP::COMMUNICATION_FAILURE,
        ),
        _ if e.key == "RFC_INVALID_PARAMETER" => (
            RFC_RC::INVALID_PARAMETER,
            RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        ),
        _ if e.key == "RFC_CONVERSION_FAILURE" => (
            RFC_RC::CONVERSION_FAILURE,
            RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        ),
        _ => (
            RFC_RC::UNKNOWN_ERROR,
            RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
        ),
    };
    let mut info = err(code, group, &e.key, e.message.clone());
    info.msg_class = e.msg_class.clone();
    info.msg_type = e.msg_type.clone();
    info.msg_number = e.msg_number.clone();
    info.msg_v = [
        e.msg_v1.clone(),
        e.msg_v2.clone(),
        e.msg_v3.clone(),
        e.msg_v4.clone(),
    ];
    info
}

/// `RFC_COMMUNICATION_FAILURE` with a message.
pub(crate) fn communication(message: &str) -> RfcErrorInfo {
    err(
        RFC_RC::COMMUNICATION_FAILURE,
        RFC_ERROR_GROUP::COMMUNICATION_FAILURE,
        "RFC_COMMUNICATION_FAILURE",
        message,
    )
}

/// One connection: a simulator session. Used by one thread at a time (the
/// caller's contract), except `cancelled`, which `RfcCancel` sets from another.
pub(crate) struct Conn {
    pub(crate) sim: Simulator,
    pub(crate) session: Mutex<SimSession>,
    pub(crate) broken: AtomicBool,
    pub(crate) cancelled: AtomicBool,
}

impl Stub {
    /// Opens a connection with logon parameters (`ASHOST` or `MSHOST` name the
    /// simulator's state file; `USER`/`PASSWD` are checked against the simulated
    /// user with SAP's lock rule).
    pub(crate) fn open(&self, params: &HashMap<String, String>) -> Result<Conn, RfcErrorInfo> {
        let host = params
            .get("ASHOST")
            .or_else(|| params.get("MSHOST"))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                err(
                    RFC_RC::INVALID_PARAMETER,
                    RFC_ERROR_GROUP::EXTERNAL_RUNTIME_FAILURE,
                    "RFC_INVALID_PARAMETER",
                    "Parameter ASHOST, GWHOST, MSHOST or SERVER_PORT is missing.",
                )
            })?;
        let path = Path::new(host);
        if !path.parent().is_some_and(Path::is_dir) {
            return Err(communication(&format!("partner '{host}' not reached")));
        }
        let user = params.get("USER").cloned().unwrap_or_default();
        let password_ok = user.eq_ignore_ascii_case(SIM_USER)
            && params.get("PASSWD").is_some_and(|p| p == SIM_PASSWORD);
        self.locks
            .logon(&user, password_ok)
            .map_err(|refused| from_sim(&refused.to_rfc_error()))?;
        let sim = self.simulator(path)?;
        let session = self.block_on(sim.session()).map_err(|e| from_sim(&e))?;
        Ok(Conn {
            sim,
            session: Mutex::new(session),
            broken: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        })
    }

    fn simulator(&self, path: &Path) -> Result<Simulator, RfcErrorInfo> {
        let mut systems = self.systems.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sim) = systems.get(path) {
            return Ok(sim.clone());
        }
        let sim = Simulator::open(path, SimOptions::default())
            .map_err(|e| communication(&e.to_string()))?;
        systems.insert(path.to_path_buf(), sim.clone());
        Ok(sim)
    }

    /// Runs a future of the simulator to completion on the stub's runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The description of `name`, built from the simulator's
    /// `RFC_GET_FUNCTION_INTERFACE` and `DDIF_FIELDINFO_GET` (as the SDK reads
    /// the system's dictionary) and cached for the life of the process.
    pub(crate) fn function(&self, conn: &Conn, name: &str) -> Result<&'static FuncD, RfcErrorInfo> {
        if let Some(found) = self
            .functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(found);
        }
        let mut request = Parameters::new();
        request.insert("FUNCNAME".into(), name.into());
        let answer = conn.call("RFC_GET_FUNCTION_INTERFACE", &request)?;
        let mut fields = Vec::new();
        let mut params = Vec::new();
        for row in answer
            .get("PARAMS")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let direction = match text(row, "PARAMCLASS").as_str() {
                "I" => RFC_DIRECTION::IMPORT,
                "E" => RFC_DIRECTION::EXPORT,
                "C" => RFC_DIRECTION::CHANGING,
                "T" => RFC_DIRECTION::TABLES,
                _ => continue,
            };
            let exid = text(row, "EXID");
            let ty = if direction == RFC_DIRECTION::TABLES {
                RFCTYPE::TABLE
            } else {
                rfc_type(&exid)
            };
            let bytes = number(row, "INTLENGTH");
            let sub = match ty {
                RFCTYPE::STRUCTURE | RFCTYPE::TABLE => {
                    Some(self.type_desc(conn, &text(row, "TABNAME"))?)
                }
                _ => None,
            };
            let nuc = if is_char_like(ty) { bytes / 2 } else { bytes };
            fields.push(FieldD {
                name: text(row, "PARAMETER"),
                ty,
                nuc,
                uc: bytes,
                decimals: number(row, "DECIMALS"),
                sub,
            });
            params.push(ParamMeta {
                direction,
                default: text(row, "DEFAULT"),
                text: text(row, "PARAMTEXT"),
                optional: text(row, "OPTIONAL") == "X",
            });
        }
        let desc: &'static FuncD = Box::leak(Box::new(FuncD {
            name: name.to_owned(),
            fields,
            params,
        }));
        self.functions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), desc);
        Ok(desc)
    }

    fn type_desc(&self, conn: &Conn, name: &str) -> Result<&'static TypeD, RfcErrorInfo> {
        if let Some(found) = self
            .types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Ok(found);
        }
        let mut request = Parameters::new();
        request.insert("TABNAME".into(), name.into());
        let answer = conn.call("DDIF_FIELDINFO_GET", &request)?;
        let fields = answer
            .get("DFIES_TAB")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|row| {
                let ty = rfc_type(&text(row, "INTTYPE"));
                let nuc = if is_char_like(ty) {
                    number(row, "LENG")
                } else {
                    number(row, "INTLEN")
                };
                FieldD {
                    name: text(row, "FIELDNAME"),
                    ty,
                    nuc,
                    uc: number(row, "INTLEN"),
                    decimals: number(row, "DECIMALS"),
                    sub: None,
                }
            })
            .collect();
        let desc: &'static TypeD = Box::leak(Box::new(TypeD {
            name: name.to_owned(),
            fields,
        }));
        self.types
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), desc);
        Ok(desc)
    }
}

impl Conn {
    /// Fails when the connection was broken or cancelled.
    pub(crate) fn usable(&self) -> Result<(), RfcErrorInfo> {
        if self.cancelled.load(Ordering::SeqCst) {
            self.broken.store(true, Ordering::SeqCst);
            return Err(err(
                RFC_RC::CANCELED,
                RFC_ERROR_GROUP::COMMUNICATION_FAILURE,
                "RFC_CANCELED",
                "Connection was canceled by RfcCancel",
            ));
        }
        if self.broken.load(Ordering::SeqCst) {
            return Err(communication("connection to partner broken"));
        }
        Ok(())
    }

    /// Calls a simulated function in this connection's session, with the
    /// stub's triggers (see the crate docs).
    pub(crate) fn call(
        &self,
        function: &str,
        parameters: &Parameters,
    ) -> Result<Parameters, RfcErrorInfo> {
        self.usable()?;
        if function == "STFC_CONNECTION" {
            self.trigger(
                parameters
                    .get("REQUTEXT")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )?;
        }
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let result = stub().block_on(session.call(function, parameters));
        drop(session);
        self.usable()?;
        result.map_err(|e| {
            if e.group == ErrorGroup::CommunicationFailure {
                self.broken.store(true, Ordering::SeqCst);
            }
            from_sim(&e)
        })
    }

    fn trigger(&self, text: &str) -> Result<(), RfcErrorInfo> {
        if text == "STUB:COMMUNICATION_FAILURE" {
            self.broken.store(true, Ordering::SeqCst);
            return Err(communication("connection to partner broken (stub trigger)"));
        }
        if let Some(ms) = text
            .strip_prefix("STUB:SLEEP:")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            let until = std::time::Instant::now() + Duration::from_millis(ms);
            while std::time::Instant::now() < until {
                if self.cancelled.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            self.usable()?;
        }
        Ok(())
    }

    /// Discards the session's uncommitted work and starts a new one.
    pub(crate) fn reset(&self) -> Result<(), RfcErrorInfo> {
        self.usable()?;
        let fresh = stub()
            .block_on(self.sim.session())
            .map_err(|e| from_sim(&e))?;
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// A row field as text.
fn text(row: &Value, field: &str) -> String {
    match row.get(field) {
        Some(Value::String(s)) => s.trim_end().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A row field as a number (`"000010"` or `10`).
fn number(row: &Value, field: &str) -> u32 {
    text(row, field).trim().parse().unwrap_or(0)
}

/// The `RFCTYPE` of an ABAP type letter.
fn rfc_type(letter: &str) -> RFCTYPE {
    match letter {
        "N" => RFCTYPE::NUM,
        "D" => RFCTYPE::DATE,
        "T" => RFCTYPE::TIME,
        "I" => RFCTYPE::INT,
        "b" => RFCTYPE::INT1,
        "s" => RFCTYPE::INT2,
        "8" => RFCTYPE::INT8,
        "F" => RFCTYPE::FLOAT,
        "P" => RFCTYPE::BCD,
        "a" => RFCTYPE::DECF16,
        "e" => RFCTYPE::DECF34,
        "X" => RFCTYPE::BYTE,
        "y" => RFCTYPE::XSTRING,
        "g" => RFCTYPE::STRING,
        "u" | "v" => RFCTYPE::STRUCTURE,
        "h" => RFCTYPE::TABLE,
        _ => RFCTYPE::CHAR,
    }
}
