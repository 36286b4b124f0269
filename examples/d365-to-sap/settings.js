// Node-RED settings for the scenario's flow: headless (no editor, no admin API),
// with HTTP-in nodes served on NODE_RED_PORT under /flow (the account webhook is
// POST /flow/account-changed). Node-RED itself is installed in ../node-red
// (`npm ci` there).
module.exports = {
    uiPort: Number(process.env.NODE_RED_PORT || 1880),
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    httpNodeRoot: "/flow",
    credentialSecret: false,
    flowFilePretty: true,
    logging: { console: { level: "info", metrics: false, audit: false } },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
