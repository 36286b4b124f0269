//! The declarative metadata model of the simulator: ABAP elementary types, DDIC
//! structures and tables, function parameters and function interfaces.
//!
//! Everything here is `'static` data (see `structures.rs` and `functions.rs`). One
//! model drives three things: input validation (`values.rs`), output formatting
//! (PyRFC conventions) and the introspection functions `RFC_GET_FUNCTION_INTERFACE`
//! and `DDIF_FIELDINFO_GET` (`introspection.rs`), so they cannot disagree.

/// An ABAP elementary type as the simulator knows it (the types beyond CHAR,
/// NUMC, DATS and INT4 appear in `Z_SAPBRIDGE_TYPES_ECHO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `C`: fixed-length characters; PyRFC returns it right-trimmed.
    Char,
    /// `N`: fixed-length digits; PyRFC returns it with leading zeros.
    Numc,
    /// `D`: a date `YYYYMMDD` (`00000000` is the initial date).
    Dats,
    /// `T`: a time `HHMMSS`.
    Tims,
    /// `I`: a 4-byte integer; PyRFC returns a number.
    Int4,
    /// `P`: packed decimal; PyRFC returns a string (no rounding).
    Packed,
    /// `g`: a variable-length string.
    Str,
    /// `F`: a binary float; PyRFC returns a number.
    Float,
    /// `b`: a 1-byte unsigned integer.
    Int1,
    /// `s`: a 2-byte integer.
    Int2,
    /// `8`: an 8-byte integer.
    Int8,
    /// `X`: fixed-length bytes; base64 in JSON, zero-padded to the length.
    Raw,
    /// `y`: variable-length bytes; base64 in JSON.
    XStr,
    /// `a`: a 16-digit decimal float; a string in JSON (no rounding).
    Decf16,
    /// `e`: a 34-digit decimal float; a string in JSON (no rounding).
    Decf34,
}

impl Kind {
    /// The ABAP internal type letter (`INTTYPE` of DFIES, `TYPE` of RFC_READ_TABLE).
    pub(crate) fn inttype(self) -> &'static str {
        match self {
            Self::Char => "C",
            Self::Numc => "N",
            Self::Dats => "D",
            Self::Tims => "T",
            Self::Int4 => "I",
            Self::Packed => "P",
            Self::Str => "g",
            Self::Float => "F",
            Self::Int1 => "b",
            Self::Int2 => "s",
            Self::Int8 => "8",
            Self::Raw => "X",
            Self::XStr => "y",
            Self::Decf16 => "a",
            Self::Decf34 => "e",
        }
    }

    /// The default DDIC data type (`DATATYPE` of DFIES).
    pub(crate) fn datatype(self) -> &'static str {
        match self {
            Self::Char => "CHAR",
            Self::Numc => "NUMC",
            Self::Dats => "DATS",
            Self::Tims => "TIMS",
            Self::Int4 => "INT4",
            Self::Packed => "DEC",
            Self::Str => "STRG",
            Self::Float => "FLTP",
            Self::Int1 => "INT1",
            Self::Int2 => "INT2",
            Self::Int8 => "INT8",
            Self::Raw => "RAW",
            Self::XStr => "RSTR",
            Self::Decf16 => "D16D",
            Self::Decf34 => "D34D",
        }
    }

    /// Whether values of this kind are JSON numbers.
    pub(crate) fn is_number(self) -> bool {
        matches!(
            self,
            Self::Int4 | Self::Int1 | Self::Int2 | Self::Int8 | Self::Float
        )
    }
}

/// One field of a structure or table (a DDIC component).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDef {
    /// Component name (`KUNNR`, `NAME`).
    pub(crate) name: &'static str,
    /// Elementary type.
    pub(crate) kind: Kind,
    /// Length in characters (digits for PACKED, 4 for INT4, 0 for STRING).
    pub(crate) len: u32,
    /// Decimals (PACKED only).
    pub(crate) decimals: u32,
    /// DDIC data type when it differs from the kind's default (`LANG`, `CUKY`, `CLNT`).
    pub(crate) ddic: Option<&'static str>,
    /// Conversion exit (`ALPHA` for customer numbers), empty when none.
    pub(crate) convexit: &'static str,
    /// Part of the table key.
    pub(crate) key: bool,
    /// Short description (`FIELDTEXT`).
    pub(crate) text: &'static str,
}

impl FieldDef {
    /// A CHAR field.
    pub(crate) const fn c(name: &'static str, len: u32, text: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Char,
            len,
            decimals: 0,
            ddic: None,
            convexit: "",
            key: false,
            text,
        }
    }

    /// A NUMC field.
    pub(crate) const fn n(name: &'static str, len: u32, text: &'static str) -> Self {
        Self {
            kind: Kind::Numc,
            ..Self::c(name, len, text)
        }
    }

    /// A DATS field.
    pub(crate) const fn d(name: &'static str, text: &'static str) -> Self {
        Self {
            kind: Kind::Dats,
            ..Self::c(name, 8, text)
        }
    }

    /// A TIMS field.
    pub(crate) const fn t(name: &'static str, text: &'static str) -> Self {
        Self {
            kind: Kind::Tims,
            ..Self::c(name, 6, text)
        }
    }

    /// An INT4 field.
    pub(crate) const fn i(name: &'static str, text: &'static str) -> Self {
        Self {
            kind: Kind::Int4,
            ..Self::c(name, 10, text)
        }
    }

    /// A PACKED field with `len` digits and `decimals` decimals.
    pub(crate) const fn p(name: &'static str, len: u32, decimals: u32, text: &'static str) -> Self {
        Self {
            kind: Kind::Packed,
            decimals,
            ..Self::c(name, len, text)
        }
    }

    /// A STRING field.
    pub(crate) const fn s(name: &'static str, text: &'static str) -> Self {
        Self {
            kind: Kind::Str,
            ..Self::c(name, 0, text)
        }
    }

    /// A field of one of the kinds that carry no length of their own (FLOAT, INT1,
    /// INT2, INT8, XSTRING, DECF16, DECF34) or a RAW field of `len` bytes.
    pub(crate) const fn of(kind: Kind, name: &'static str, len: u32, text: &'static str) -> Self {
        Self {
            kind,
            ..Self::c(name, len, text)
        }
    }

    /// The same field with a DDIC data type such as `LANG`, `CUKY` or `CLNT`.
    pub(crate) const fn ddic(self, ddic: &'static str) -> Self {
        Self {
            ddic: Some(ddic),
            ..self
        }
    }

    /// The same field with the ALPHA conversion exit (customer numbers).
    pub(crate) const fn alpha(self) -> Self {
        Self {
            convexit: "ALPHA",
            ..self
        }
    }

    /// The same field marked as a key field.
    pub(crate) const fn key(self) -> Self {
        Self { key: true, ..self }
    }

    /// The DDIC data type (`CHAR`, `LANG`, `DATS`, ...).
    pub(crate) fn datatype(&self) -> &'static str {
        self.ddic.unwrap_or_else(|| self.kind.datatype())
    }

    /// Characters the field occupies in a flat character line (RFC_READ_TABLE,
    /// DFIES `LENG`/`OFFSET`): the length for character-like types, 11 for INT4,
    /// the digits plus sign and point for PACKED.
    pub(crate) fn width(&self) -> u32 {
        match self.kind {
            Kind::Int4 => 11,
            Kind::Int1 => 3,
            Kind::Int2 => 6,
            Kind::Int8 => 20,
            Kind::Float => 24,
            Kind::Raw => self.len * 2,
            Kind::Decf16 => 24,
            Kind::Decf34 => 42,
            Kind::Packed => self.len + 2,
            _ => self.len,
        }
    }

    /// Bytes the field occupies in a Unicode system (2 per character).
    pub(crate) fn intlen_unicode(&self) -> u32 {
        match self.kind {
            Kind::Int4 => 4,
            Kind::Int1 => 1,
            Kind::Int2 => 2,
            Kind::Int8 | Kind::Float | Kind::Decf16 => 8,
            Kind::Decf34 => 16,
            Kind::Raw => self.len,
            Kind::Packed => self.len / 2 + 1,
            Kind::Str | Kind::XStr => 8,
            _ => self.len * 2,
        }
    }

    /// Bytes the field occupies in a non-Unicode system (1 per character).
    pub(crate) fn intlen_single(&self) -> u32 {
        match self.kind {
            Kind::Char | Kind::Numc | Kind::Dats | Kind::Tims => self.len,
            _ => self.intlen_unicode(),
        }
    }
}

/// What kind of DDIC object a structure definition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StructKind {
    /// A structure (`INTTAB`).
    Structure,
    /// A transparent table (`TRANSP`).
    Table,
}

/// A DDIC structure or transparent table.
#[derive(Debug)]
pub(crate) struct StructDef {
    /// DDIC name (`BAPIKNA106`, `KNA1`).
    pub(crate) name: &'static str,
    /// Structure or table.
    pub(crate) kind: StructKind,
    /// Short description.
    pub(crate) text: &'static str,
    /// Components in order.
    pub(crate) fields: &'static [FieldDef],
}

impl StructDef {
    /// The component called `name` (exact, upper case).
    pub(crate) fn field(&self, name: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The direction of a function parameter (`PARAMCLASS` of RFC_FUNINT).
///
/// CHANGING is part of the model although no simulated interface uses it yet.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamClass {
    /// IMPORTING (`I`): caller → function.
    Importing,
    /// EXPORTING (`E`): function → caller.
    Exporting,
    /// CHANGING (`C`): both ways.
    Changing,
    /// TABLES (`T`): both ways, an internal table.
    Tables,
}

impl ParamClass {
    /// The letter RFC_GET_FUNCTION_INTERFACE uses.
    pub(crate) fn letter(self) -> &'static str {
        match self {
            Self::Importing => "I",
            Self::Exporting => "E",
            Self::Changing => "C",
            Self::Tables => "T",
        }
    }

    /// Whether the caller may send this parameter.
    pub(crate) fn is_input(self) -> bool {
        !matches!(self, Self::Exporting)
    }

    /// Whether the result carries this parameter.
    pub(crate) fn is_output(self) -> bool {
        !matches!(self, Self::Importing)
    }
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ParamType {
    /// An elementary value typed like a DDIC field (`TABNAME-FIELDNAME`).
    Elem {
        /// Referenced structure (`BAPIKNA103`), for RFC_GET_FUNCTION_INTERFACE.
        tab: &'static str,
        /// Referenced field, its type and length.
        field: FieldDef,
    },
    /// A flat structure.
    Struct(&'static StructDef),
    /// A table of flat structures.
    Table(&'static StructDef),
}

/// One parameter of a function module.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamDef {
    /// Parameter name.
    pub(crate) name: &'static str,
    /// Direction.
    pub(crate) class: ParamClass,
    /// Type.
    pub(crate) ty: ParamType,
    /// Whether the parameter may be left out (informational for RFC: a missing
    /// IMPORTING parameter arrives as its initial value, as in SAP).
    pub(crate) optional: bool,
    /// Default value as written in the interface (`SPACE`, `0`), empty when none.
    pub(crate) default: &'static str,
    /// Short description.
    pub(crate) text: &'static str,
}

impl ParamDef {
    /// An IMPORTING parameter typed like `tab-field`.
    pub(crate) const fn imp(name: &'static str, tab: &'static str, field: FieldDef) -> Self {
        Self {
            name,
            class: ParamClass::Importing,
            ty: ParamType::Elem { tab, field },
            optional: false,
            default: "",
            text: field.text,
        }
    }

    /// An EXPORTING parameter typed like `tab-field`.
    pub(crate) const fn exp(name: &'static str, tab: &'static str, field: FieldDef) -> Self {
        Self {
            class: ParamClass::Exporting,
            ..Self::imp(name, tab, field)
        }
    }

    /// An IMPORTING structure.
    pub(crate) const fn imp_struct(name: &'static str, def: &'static StructDef) -> Self {
        Self {
            name,
            class: ParamClass::Importing,
            ty: ParamType::Struct(def),
            optional: false,
            default: "",
            text: def.text,
        }
    }

    /// An EXPORTING structure.
    pub(crate) const fn exp_struct(name: &'static str, def: &'static StructDef) -> Self {
        Self {
            class: ParamClass::Exporting,
            ..Self::imp_struct(name, def)
        }
    }

    /// A TABLES parameter.
    pub(crate) const fn table(name: &'static str, def: &'static StructDef) -> Self {
        Self {
            name,
            class: ParamClass::Tables,
            ty: ParamType::Table(def),
            optional: false,
            default: "",
            text: def.text,
        }
    }

    /// The same parameter, optional.
    pub(crate) const fn opt(self) -> Self {
        Self {
            optional: true,
            ..self
        }
    }

    /// The same parameter, optional with a default value.
    pub(crate) const fn default(self, default: &'static str) -> Self {
        Self {
            optional: true,
            default,
            ..self
        }
    }

    /// The same parameter with another description.
    pub(crate) const fn text(self, text: &'static str) -> Self {
        Self { text, ..self }
    }
}

/// A function module's interface.
#[derive(Debug)]
pub(crate) struct FunctionDef {
    /// Function module name.
    pub(crate) name: &'static str,
    /// Parameters in interface order.
    pub(crate) params: &'static [ParamDef],
    /// Classic exceptions the function may raise.
    pub(crate) exceptions: &'static [&'static str],
}

impl FunctionDef {
    /// The parameter called `name` (exact, upper case).
    pub(crate) fn param(&self, name: &str) -> Option<&'static ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }
}
