#!/usr/bin/env node
// Interop check of the cell OPC UA server with an independent stack (node-opcua, pinned in
// package.json). Connects over Basic256Sha256/SignAndEncrypt with a client certificate and
// user name/password, browses the cell, reads the supervisor state, subscribes (50 ms) and
// calls methods; prints one JSON object on stdout. Exit code 0 when it ran (assertions are the
// caller's), 2 on a connection/session failure (JSON still printed with "error").
//
// usage: node interop/cell_client_session.js '<json options>'
//   {endpoint, certFile, keyFile, applicationUri, pkiDir, serverCert, user, password,
//    namespaceUri, machine, watchMs, calls: [{method, args: [string...]}]}
"use strict";
const fs = require("fs");
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, UserTokenType, AttributeIds, DataType,
  ClientSubscription, ClientMonitoredItem, TimestampsToReturn, OPCUACertificateManager,
} = require("node-opcua");

const opt = JSON.parse(process.argv[2] || "{}");
const out = { ok: false, stack: "node-opcua", steps: [] };
const machine = opt.machine || "ATMPCell01";

function emit(code) {
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(code);
}

async function main() {
  const certificateManager = new OPCUACertificateManager({
    rootFolder: opt.pkiDir, automaticallyAcceptUnknownCertificate: false,
  });
  await certificateManager.initialize();
  if (opt.serverCert) {
    const raw = fs.readFileSync(opt.serverCert);
    await certificateManager.trustCertificate(raw);
  }
  const client = OPCUAClient.create({
    applicationName: "aseptic_cell node-opcua interop client",
    applicationUri: opt.applicationUri,
    certificateFile: opt.certFile,
    privateKeyFile: opt.keyFile,
    clientCertificateManager: certificateManager,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: true,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    requestedSessionTimeout: 60000,
  });
  await client.connect(opt.endpoint);
  out.steps.push("connect");
  const session = await client.createSession({
    type: UserTokenType.UserName, userName: opt.user, password: opt.password,
  });
  out.steps.push("session");
  try {
    out.securityMode = MessageSecurityMode[client.securityMode];
    out.securityPolicy = client.securityPolicy;
    const nsArray = (await session.read({ nodeId: "ns=0;i=2255", attributeId: AttributeIds.Value })).value.value;
    const ns = nsArray.indexOf(opt.namespaceUri);
    out.namespaceIndex = ns;
    const id = (path) => `ns=${ns};s=${machine}${path ? "." + path : ""}`;

    // browse: Objects -> Machines -> the machine -> its components
    const objects = await session.browse("ns=0;i=85");
    out.objects = objects.references.map((r) => r.browseName.name);
    const cell = await session.browse(id(""));
    out.cellChildren = cell.references.map((r) => r.browseName.name).sort();
    const sup = await session.browse(id("Supervisor"));
    out.supervisorChildren = sup.references.map((r) => r.browseName.name).sort();
    out.steps.push("browse");

    // read
    const paths = ["Supervisor.CurrentState", "Supervisor.CurrentStateNumber", "Supervisor.ISA88State",
      "Supervisor.ActiveBatch.BatchId", "Identification.Manufacturer", "Alarms.ActiveCount"];
    const dvs = await session.read(paths.map((p) => ({ nodeId: id(p), attributeId: AttributeIds.Value })));
    out.read = {};
    paths.forEach((p, i) => {
      out.read[p] = { value: dvs[i].value.value, status: dvs[i].statusCode.name };
    });
    out.steps.push("read");

    // subscribe (50 ms publishing, 0 ms sampling = on change)
    const sub = ClientSubscription.create(session, {
      requestedPublishingInterval: 50, requestedLifetimeCount: 600, requestedMaxKeepAliveCount: 20,
      maxNotificationsPerPublish: 1000, publishingEnabled: true, priority: 10,
    });
    out.notifications = [];
    const watch = opt.watch || ["Supervisor.CurrentState"];
    for (const p of watch) {
      const item = ClientMonitoredItem.create(sub, { nodeId: id(p), attributeId: AttributeIds.Value },
        { samplingInterval: 0, discardOldest: true, queueSize: 10 }, TimestampsToReturn.Both);
      item.on("changed", (dv) => out.notifications.push({ path: p, value: dv.value.value, status: dv.statusCode.name }));
    }
    await new Promise((r) => setTimeout(r, opt.watchMs || 2000));
    await sub.terminate();
    out.steps.push("subscribe");

    // method calls
    out.calls = [];
    for (const c of opt.calls || []) {
      const res = await session.call({
        objectId: id("Supervisor"), methodId: id(`Supervisor.${c.method}`),
        inputArguments: (c.args || []).map((a) => ({ dataType: DataType.String, value: a })),
      });
      out.calls.push({
        method: c.method, status: res.statusCode.name,
        outputs: (res.outputArguments || []).map((v) => v.value),
      });
    }
    out.steps.push("call");
    out.ok = true;
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().then(() => emit(0)).catch((err) => {
  out.error = String(err && err.message ? err.message : err);
  emit(2);
});
