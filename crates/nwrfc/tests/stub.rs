//! The binding against the stub library (the SDK's C interface over sapbridge's
//! SAP simulator): logon, metadata, every data path the simulator's functions
//! use, `RFC_BUFFER_TOO_SMALL`, tables, errors, cancellation from another thread,
//! tRFC argument checks, and the stub's own promises (NULL error info, invalid
//! handles answered, not crashed on). Run under valgrind's memcheck, these cover
//! the binding's unsafe code end to end.

#[path = "fixtures/stub_library.rs"]
mod stub_library;

use std::time::Duration;

#[allow(clippy::result_large_err)]
type Opened = Result<Connection, sapbridge_nwrfc::RfcErrorInfo>;

use sapbridge_nwrfc::{Connection, Function, RFC_DIRECTION, RFC_ERROR_GROUP, RFC_RC, Sdk};

const USER: &str = "SIMUSER";
const PASSWORD: &str = "sim-secret";

fn sdk() -> &'static Sdk {
    Sdk::load(Some(stub_library::stub_library())).expect("the stub loads")
}

#[allow(clippy::result_large_err)]
fn open(db: &std::path::Path, password: &str) -> Opened {
    let host = db.display().to_string();
    Connection::open(
        sdk(),
        &[
            ("ASHOST", &host),
            ("SYSNR", "00"),
            ("CLIENT", "001"),
            ("USER", USER),
            ("PASSWD", password),
        ],
    )
}

#[test]
fn logs_on_reads_metadata_and_calls_a_function() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!((sdk().version().major, sdk().version().minor), (7, 500));
    assert!(
        sdk().version().text.contains("stub"),
        "{:?}",
        sdk().version()
    );
    let mut conn = open(&dir.path().join("sim.db"), PASSWORD).unwrap();
    assert!(conn.is_valid());
    conn.ping().unwrap();
    let desc = conn.function_desc("STFC_CONNECTION").unwrap();
    let params = desc.parameters().unwrap();
    let names: Vec<_> = params
        .iter()
        .map(|p| (p.name.as_str(), p.direction, p.nuc_length))
        .collect();
    assert_eq!(
        names,
        [
            ("REQUTEXT", RFC_DIRECTION::IMPORT, 255),
            ("ECHOTEXT", RFC_DIRECTION::EXPORT, 255),
            ("RESPTEXT", RFC_DIRECTION::EXPORT, 255)
        ]
    );
    let mut call = Function::new(&desc).unwrap();
    call.data().set_chars("REQUTEXT", "Grüße 𝄞").unwrap();
    conn.invoke(&mut call).unwrap();
    let echo = call.data().get_chars("ECHOTEXT", 255, false).unwrap();
    assert_eq!(echo.trim_end(), "Grüße 𝄞");
    // A string read with a buffer far too small is retried with the length the
    // library reports (RFC_BUFFER_TOO_SMALL).
    let response = call.data().get_string("RESPTEXT", 2).unwrap();
    assert!(response.contains("Sysid: SIM"), "{response}");
    // A fixed-length read with a short buffer is refused, not cut silently.
    let error = call.data().get_chars("RESPTEXT", 10, false).unwrap_err();
    assert_eq!(error.code, RFC_RC::BUFFER_TOO_SMALL);
}

#[test]
fn tables_structures_and_numbers_travel_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open(&dir.path().join("sim.db"), PASSWORD).unwrap();
    let desc = conn.function_desc("RFC_READ_TABLE").unwrap();
    let mut call = Function::new(&desc).unwrap();
    {
        let mut data = call.data();
        data.set_chars("QUERY_TABLE", "KNA1").unwrap();
        data.set_chars("DELIMITER", "|").unwrap();
        data.set_int("ROWCOUNT", 2).unwrap();
        let mut fields = data.table("FIELDS").unwrap();
        for name in ["KUNNR", "LAND1"] {
            fields
                .append_row()
                .unwrap()
                .set_chars("FIELDNAME", name)
                .unwrap();
        }
    }
    conn.invoke(&mut call).unwrap();
    let mut data = call.data();
    let mut rows = data.table("DATA").unwrap();
    assert_eq!(rows.row_count().unwrap(), 2);
    let first = rows.row(0).unwrap().get_chars("WA", 512, false).unwrap();
    assert!(first.trim_end().contains('|'), "{first:?}");
    assert_eq!(rows.row(2).unwrap_err().code, RFC_RC::TABLE_MOVE_EOF);
    let mut fields = data.table("FIELDS").unwrap();
    let mut kunnr = fields.row(0).unwrap();
    assert_eq!(kunnr.get_chars("LENGTH", 6, true).unwrap(), "000010");
    assert_eq!(kunnr.get_chars("TYPE", 1, false).unwrap(), "C");

    let desc = conn.function_desc("RFC_SYSTEM_INFO").unwrap();
    let mut call = Function::new(&desc).unwrap();
    conn.invoke(&mut call).unwrap();
    let mut data = call.data();
    assert_eq!(data.get_int("MAXIMAL_RESOURCES").unwrap(), 10);
    let mut info = data.structure("RFCSI_EXPORT").unwrap();
    assert_eq!(
        info.get_chars("RFCSYSID", 8, false).unwrap().trim_end(),
        "SIM"
    );
}

#[test]
fn errors_carry_sap_s_group_key_and_message_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let error = open(&db, "wrong").unwrap_err();
    assert_eq!(
        (error.code, error.group),
        (RFC_RC::LOGON_FAILURE, RFC_ERROR_GROUP::LOGON_FAILURE)
    );
    let error = open(&dir.path().join("no/such/dir/sim.db"), PASSWORD).unwrap_err();
    assert_eq!(error.code, RFC_RC::COMMUNICATION_FAILURE);

    let mut conn = open(&db, PASSWORD).unwrap();
    let error = conn.function_desc("Z_DOES_NOT_EXIST").unwrap_err();
    assert_eq!(
        (error.group, error.key.as_str()),
        (RFC_ERROR_GROUP::ABAP_APPLICATION_FAILURE, "FU_NOT_FOUND")
    );
    assert_eq!(
        (error.msg_class.as_str(), error.msg_number.as_str()),
        ("FL", "046")
    );
    let desc = conn.function_desc("RFC_READ_TABLE").unwrap();
    let mut call = Function::new(&desc).unwrap();
    call.data().set_chars("QUERY_TABLE", "NOPE").unwrap();
    let error = conn.invoke(&mut call).unwrap_err();
    assert_eq!(
        (error.code, error.key.as_str()),
        (RFC_RC::ABAP_EXCEPTION, "TABLE_NOT_AVAILABLE")
    );
    let error = call.data().set_chars("NO_SUCH_FIELD", "x").unwrap_err();
    assert_eq!(error.code, RFC_RC::INVALID_PARAMETER);
    // A TID must be 24 characters.
    assert_eq!(
        conn.transaction("short").unwrap_err().code,
        RFC_RC::INVALID_PARAMETER
    );
    // The connection still works after all of that.
    conn.ping().unwrap();
}

#[test]
fn a_call_is_cancelled_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = open(&dir.path().join("sim.db"), PASSWORD).unwrap();
    let desc = conn.function_desc("STFC_CONNECTION").unwrap();
    let mut call = Function::new(&desc).unwrap();
    call.data()
        .set_chars("REQUTEXT", "STUB:SLEEP:30000")
        .unwrap();
    let canceller = conn.canceller();
    let started = std::time::Instant::now();
    let cancelling = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        canceller.cancel()
    });
    let error = conn.invoke(&mut call).unwrap_err();
    assert!(
        cancelling.join().unwrap(),
        "the connection was open when cancelled"
    );
    assert_eq!(error.code, RFC_RC::CANCELED);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!conn.is_valid());
    // A canceller outliving its connection does nothing.
    let canceller = conn.canceller();
    drop(conn);
    assert!(!canceller.cancel());
}

#[test]
fn the_stub_accepts_null_error_info_and_refuses_bad_handles() {
    use sapbridge_nwrfc::ffi;
    let library = stub_library::stub_library();
    // SAFETY: the stub is loaded like the SDK and never unloaded while its
    // functions run (the `Library` lives until the end of the test).
    let lib = unsafe { libloading::Library::new(library) }.unwrap();
    // SAFETY: the symbols have the signatures the binding declares (the stub
    // checks its exports against them at compile time).
    let (open, row_count, version) = unsafe {
        (
            *lib.get::<ffi::RfcOpenConnection>(b"RfcOpenConnection\0")
                .unwrap(),
            *lib.get::<ffi::RfcGetRowCount>(b"RfcGetRowCount\0").unwrap(),
            *lib.get::<ffi::RfcGetVersion>(b"RfcGetVersion\0").unwrap(),
        )
    };
    // SAFETY: no parameters (count 0) and a NULL error info, which the stub accepts.
    let handle = unsafe { open(std::ptr::null(), 0, std::ptr::null_mut()) };
    assert!(handle.is_null());
    let mut count = 0u32;
    // SAFETY: a NULL table handle must be answered, not dereferenced.
    let rc = unsafe { row_count(std::ptr::null_mut(), &mut count, std::ptr::null_mut()) };
    assert_eq!(rc, RFC_RC::INVALID_HANDLE);
    let mut info = ffi::RFC_ERROR_INFO::default();
    // SAFETY: valid out-pointers.
    let rc = unsafe { row_count(std::ptr::null_mut(), std::ptr::null_mut(), &mut info) };
    assert_eq!(
        (rc, info.code),
        (RFC_RC::INVALID_HANDLE, RFC_RC::INVALID_HANDLE)
    );
    // SAFETY: NULL out-pointers are allowed; the version text is static.
    let text = unsafe {
        version(
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert!(!text.is_null());
}
