// Node-RED settings for running the flows of this folder headless (no editor, no
// admin API): `node node_modules/node-red/red.js --settings settings.js
// --userDir DIR FLOW.json`, with the flow's environment (SAPBRIDGE_URL,
// SAPBRIDGE_API_KEY, RESULT_FILE) set by the caller.
module.exports = {
    uiPort: Number(process.env.NODE_RED_PORT || 1880),
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    httpNodeRoot: false,
    credentialSecret: false,
    flowFilePretty: true,
    logging: { console: { level: "info", metrics: false, audit: false } },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
