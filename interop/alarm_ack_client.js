#!/usr/bin/env node
// Issue 18 interop: OPC UA Alarms & Conditions (Part 9) with an independent stack (node-opcua).
// Over Basic256Sha256/SignAndEncrypt as a user: subscribes to AlarmConditionType events of the Server
// object, prints {"subscribed": true} (the caller then raises the alarm), waits for the event of the
// alarm `alarm` unacknowledged, calls Acknowledge (AcknowledgeableConditionType) on its ConditionId
// with its EventId, and waits for the event that says it is acknowledged. Prints one JSON object at the
// end; exit 0 when it ran (the caller asserts), 2 on a failure (JSON with "error").
//
// usage: node interop/alarm_ack_client.js '{endpoint, certFile, keyFile, applicationUri, pkiDir,
//   serverCert, user, password, alarm, comment, timeoutMs}'
"use strict";
const fs = require("fs");
const {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, UserTokenType, AttributeIds, TimestampsToReturn,
  OPCUACertificateManager, constructEventFilter, resolveNodeId,
} = require("node-opcua");

const opt = JSON.parse(process.argv[2] || "{}");
const out = { ok: false, stack: "node-opcua", events: [] };
const FIELDS = ["EventId", "EventType", "ConditionName", "SourceName", "Severity", "Message", "Retain",
  "ActiveState.Id", "AckedState.Id", "ConditionId"];

function emit(code) {
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(code);
}

async function main() {
  const cm = new OPCUACertificateManager({ rootFolder: opt.pkiDir, automaticallyAcceptUnknownCertificate: false });
  await cm.initialize();
  if (opt.serverCert) await cm.trustCertificate(fs.readFileSync(opt.serverCert));
  const client = OPCUAClient.create({
    applicationName: "aseptic_cell node-opcua A&C client", applicationUri: opt.applicationUri,
    certificateFile: opt.certFile, privateKeyFile: opt.keyFile, clientCertificateManager: cm,
    securityMode: MessageSecurityMode.SignAndEncrypt, securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: true, connectionStrategy: { maxRetry: 0 }, requestedSessionTimeout: 60000,
  });
  await client.connect(opt.endpoint);
  const session = await client.createSession({ type: UserTokenType.UserName, userName: opt.user, password: opt.password });
  try {
    const sub = await session.createSubscription2({ requestedPublishingInterval: 50, publishingEnabled: true,
      requestedMaxKeepAliveCount: 20, requestedLifetimeCount: 600, maxNotificationsPerPublish: 100 });
    const mon = await sub.monitor({ nodeId: resolveNodeId("Server"), attributeId: AttributeIds.EventNotifier },
      { samplingInterval: 0, discardOldest: false, queueSize: 100, filter: constructEventFilter(FIELDS) },
      TimestampsToReturn.Both);
    const waiters = [];
    mon.on("changed", (fields) => {
      const ev = {};
      FIELDS.forEach((f, i) => { ev[f] = fields[i].value; });
      out.events.push({
        condition: ev.ConditionName, severity: ev.Severity, message: ev.Message && ev.Message.text,
        acked: ev["AckedState.Id"], active: ev["ActiveState.Id"], retain: ev.Retain,
        eventType: ev.EventType && ev.EventType.toString(), conditionId: ev.ConditionId && ev.ConditionId.toString(),
      });
      for (const w of waiters.slice()) if (w.test(ev)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(ev); }
    });
    const waitFor = (test) => new Promise((resolve, reject) => {
      waiters.push({ test, resolve });
      setTimeout(() => reject(new Error("timeout waiting for an event")), opt.timeoutMs || 30000);
    });
    const unacked = waitFor((ev) => ev.ConditionName === opt.alarm && ev["AckedState.Id"] === false);
    process.stdout.write(JSON.stringify({ subscribed: true }) + "\n");
    const ev = await unacked;
    const acked = waitFor((e) => e.ConditionName === opt.alarm && e["AckedState.Id"] === true);
    // a wrong EventId is refused
    out.badEventStatus = (await session.acknowledgeCondition(ev.ConditionId, Buffer.from("not-an-event"), opt.comment)).name;
    out.ackStatus = (await session.acknowledgeCondition(ev.ConditionId, ev.EventId, opt.comment)).name;
    if (out.ackStatus === "Good") await acked;
    await sub.terminate();
    out.ok = true;
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().then(() => emit(0)).catch((e) => { out.error = String(e && e.stack || e); emit(2); });
