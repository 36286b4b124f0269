//! The demo customers a new state file starts with.
//!
//! `0000001000` is the reference customer the create BAPI copies from (sales area
//! 1000/10/00, company code 1000, Germany); the others are ordinary customers in
//! Germany, the US, the UK, France and Switzerland. New customers get numbers from
//! `0000100001` on.

use super::record::{Record, derive};

/// One demo customer: number, name, street, house number, postal code, city,
/// region, country, language, currency, phone, e-mail, sales organisation.
struct Demo {
    kunnr: &'static str,
    name: &'static str,
    street: &'static str,
    house: &'static str,
    pstlz: &'static str,
    city: &'static str,
    region: &'static str,
    country: &'static str,
    spras: &'static str,
    waers: &'static str,
    phone: &'static str,
    email: &'static str,
    vkorg: &'static str,
    bukrs: &'static str,
}

const DEMOS: &[Demo] = &[
    Demo {
        kunnr: "0000001000",
        name: "Referenzkunde Inland",
        street: "Dietmar-Hopp-Allee",
        house: "16",
        pstlz: "69190",
        city: "Walldorf",
        region: "08",
        country: "DE",
        spras: "D",
        waers: "EUR",
        phone: "+49 6227 7000",
        email: "referenz@example.com",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001001",
        name: "Becker Maschinenbau GmbH",
        street: "Industriestrasse",
        house: "12",
        pstlz: "70173",
        city: "Stuttgart",
        region: "08",
        country: "DE",
        spras: "D",
        waers: "EUR",
        phone: "+49 711 555010",
        email: "info@becker-maschinenbau.example",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001002",
        name: "Hansa Logistik AG",
        street: "Am Sandtorkai",
        house: "40",
        pstlz: "20457",
        city: "Hamburg",
        region: "02",
        country: "DE",
        spras: "D",
        waers: "EUR",
        phone: "+49 40 555020",
        email: "kontakt@hansa-logistik.example",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001003",
        name: "Müller & Söhne KG",
        street: "Leopoldstrasse",
        house: "77",
        pstlz: "80802",
        city: "München",
        region: "09",
        country: "DE",
        spras: "D",
        waers: "EUR",
        phone: "+49 89 555030",
        email: "service@mueller-soehne.example",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001004",
        name: "Acme Industrial Supply Inc.",
        street: "W Madison St",
        house: "200",
        pstlz: "60606",
        city: "Chicago",
        region: "IL",
        country: "US",
        spras: "E",
        waers: "USD",
        phone: "+1 312 555 0140",
        email: "orders@acme-industrial.example",
        vkorg: "3000",
        bukrs: "3000",
    },
    Demo {
        kunnr: "0000001005",
        name: "Thames Valley Components Ltd",
        street: "Kings Road",
        house: "5",
        pstlz: "RG1 3AR",
        city: "Reading",
        region: "",
        country: "GB",
        spras: "E",
        waers: "GBP",
        phone: "+44 118 496 0150",
        email: "sales@tvc.example",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001006",
        name: "Atelier Lumière SARL",
        street: "Rue de la République",
        house: "18",
        pstlz: "69002",
        city: "Lyon",
        region: "",
        country: "FR",
        spras: "F",
        waers: "EUR",
        phone: "+33 4 72 55 01 60",
        email: "contact@atelier-lumiere.example",
        vkorg: "1000",
        bukrs: "1000",
    },
    Demo {
        kunnr: "0000001007",
        name: "Alpen Präzision AG",
        street: "Bahnhofstrasse",
        house: "3",
        pstlz: "8001",
        city: "Zürich",
        region: "ZH",
        country: "CH",
        spras: "D",
        waers: "CHF",
        phone: "+41 44 555 01 70",
        email: "info@alpen-praezision.example",
        vkorg: "1000",
        bukrs: "1000",
    },
];

/// The demo customers as stored records (with derived columns filled).
pub(crate) fn demo_customers() -> Vec<Record> {
    DEMOS
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut rec = Record::new();
            let mut set = |k: &str, v: &str| {
                rec.insert(k.to_owned(), v.to_owned());
            };
            set("MANDT", "001");
            set("KUNNR", d.kunnr);
            set("NAME1", d.name);
            set("STREET", d.street);
            set("HOUSE_NUM1", d.house);
            set("PSTLZ", d.pstlz);
            set("ORT01", d.city);
            set("REGIO", d.region);
            set("LAND1", d.country);
            set("SPRAS", d.spras);
            set("WAERS", d.waers);
            set("TELF1", d.phone);
            set("SMTP_ADDR", d.email);
            set("VKORG", d.vkorg);
            set("VTWEG", "10");
            set("SPART", "00");
            set("BUKRS", d.bukrs);
            set("AKONT", "0000140000");
            set("ZTERM", "0001");
            set("VSBED", "01");
            set("VWERK", d.vkorg);
            set("KTOKD", "KUNA");
            set("ANRED", "Firma");
            set("ERDAT", "20240102");
            set("ERNAM", "SIMADMIN");
            set("ADRNR", &format!("{:010}", 22001 + i));
            derive(&mut rec);
            rec
        })
        .collect()
}
