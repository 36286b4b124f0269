// Stand-ins for the cloud services of the seed scenario, in one small Node.js
// server without dependencies (node:http), state in memory:
//
//   Dynamics 365 (Dataverse) accounts   GET/PATCH /crm/accounts/{id}, GET /crm/accounts
//     A PATCH that leaves an account of type "customer" (changed from "prospect",
//     or a customer whose data changed) posts it to FLOW_URL, as Dataverse's
//     "When a row is added, modified" trigger starts a flow. A PATCH that only
//     sets sap_customer_number (the flow writing the number back) does not.
//   SharePoint list "SAP sync log"       GET/POST /sharepoint/lists/sap-sync-log/items
//   Notifications (Teams / e-mail)       GET/POST /notifications
//
// Environment: PORT (0: any free port), FLOW_URL (where account changes go).
// Prints "stand-ins listening on http://127.0.0.1:PORT" when ready.
"use strict";
const http = require("node:http");

const accounts = new Map([
    ["A-1001", {
        id: "A-1001", name: "Contoso Pharma GmbH", street: "Hauptstrasse 1",
        postal_code: "69190", city: "Walldorf", country: "DE",
        email: "purchasing@contoso.example", phone: "+49 6227 0",
        account_type: "prospect", sap_customer_number: null,
    }],
]);
const logItems = [];
const notifications = [];
const flowUrl = process.env.FLOW_URL || "";

function send(res, status, body) {
    const text = body === undefined ? "" : JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json" });
    res.end(text);
}

function readJson(req) {
    return new Promise((resolve, reject) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if (!text.trim()) return resolve({});
            try { resolve(JSON.parse(text)); } catch (e) { reject(e); }
        });
        req.on("error", reject);
    });
}

// Posts an account change to the flow; retried a few times (the flow's endpoint
// may not be up yet), as Dataverse retries its webhooks.
async function notifyFlow(account) {
    if (!flowUrl) return;
    for (let attempt = 1; attempt <= 10; attempt++) {
        try {
            const res = await fetch(flowUrl, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body: JSON.stringify({ event: "account.modified", account }),
            });
            if (res.ok) return;
            console.error(`flow answered ${res.status} (attempt ${attempt})`);
        } catch (e) {
            console.error(`flow unreachable: ${e.message} (attempt ${attempt})`);
        }
        await new Promise((r) => setTimeout(r, 500 * attempt));
    }
}

const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://stand-in");
    const path = url.pathname;
    try {
        if (path === "/crm/accounts" && req.method === "GET") {
            return send(res, 200, { value: [...accounts.values()] });
        }
        const account = path.match(/^\/crm\/accounts\/([^/]+)$/);
        if (account) {
            const current = accounts.get(decodeURIComponent(account[1]));
            if (!current) return send(res, 404, { error: "no such account" });
            if (req.method === "GET") return send(res, 200, current);
            if (req.method === "PATCH") {
                const changes = await readJson(req);
                const before = { ...current };
                Object.assign(current, changes);
                const onlyNumber = Object.keys(changes).every((k) => k === "sap_customer_number");
                const changed = Object.keys(changes).some((k) => before[k] !== current[k]);
                if (current.account_type === "customer" && changed && !onlyNumber) {
                    notifyFlow({ ...current });
                }
                return send(res, 200, current);
            }
        }
        if (path === "/sharepoint/lists/sap-sync-log/items") {
            if (req.method === "GET") return send(res, 200, { value: logItems });
            if (req.method === "POST") {
                const item = { id: logItems.length + 1, created: new Date().toISOString(), ...(await readJson(req)) };
                logItems.push(item);
                return send(res, 201, item);
            }
        }
        if (path === "/notifications") {
            if (req.method === "GET") return send(res, 200, { value: notifications });
            if (req.method === "POST") {
                const note = await readJson(req);
                notifications.push(note);
                return send(res, 201, note);
            }
        }
        send(res, 404, { error: `no route ${req.method} ${path}` });
    } catch (e) {
        send(res, 400, { error: e.message });
    }
});

server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    console.log(`stand-ins listening on http://127.0.0.1:${server.address().port}`);
});
