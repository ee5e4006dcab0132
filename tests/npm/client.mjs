// The official `openai` npm client against a harmonia server.
// Usage: node client.mjs BASE_URL API_KEY   (BASE_URL like http://127.0.0.1:PORT/v1)
// Prints one JSON line {"ok": true, ...} and exits 0, or prints "FAIL: ..." and exits 1.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const fail = (m) => {
  console.error('FAIL: ' + m);
  process.exit(1);
};

try {
  // Models listing.
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  if (ids.length !== 1) fail('models: expected one model, got ' + JSON.stringify(ids));
  const model = ids[0];

  // A chat completion.
  const chat = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }],
    max_tokens: 16,
    temperature: 0,
  });
  const content = chat.choices?.[0]?.message?.content;
  if (typeof content !== 'string' || content.length === 0) fail('chat: no content: ' + JSON.stringify(chat));
  if (chat.object !== 'chat.completion') fail('chat: object is ' + chat.object);
  if (!(chat.usage?.completion_tokens > 0)) fail('chat: no usage: ' + JSON.stringify(chat.usage));

  // A streamed completion, with the usage chunk; the same text as without streaming.
  const params = { model, prompt: 'Once upon a time', max_tokens: 24, temperature: 0 };
  const whole = await client.completions.create(params);
  const stream = await client.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usageChunks = 0;
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usageChunks++;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  if (text !== whole.choices[0].text) fail(`stream: text ${JSON.stringify(text)} != ${JSON.stringify(whole.choices[0].text)}`);
  if (usageChunks !== 1) fail('stream: usage chunks ' + usageChunks);
  if (finish !== whole.choices[0].finish_reason) fail('stream: finish_reason ' + finish);

  // Errors arrive as the client's typed errors.
  try {
    await client.completions.create({ model: 'no-such-model', prompt: 'x' });
    fail('unknown model: no error');
  } catch (e) {
    if (!(e instanceof OpenAI.NotFoundError)) fail('unknown model: ' + e);
  }
  try {
    await new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 }).models.list();
    fail('wrong key: no error');
  } catch (e) {
    if (!(e instanceof OpenAI.AuthenticationError)) fail('wrong key: ' + e);
  }
  console.log(JSON.stringify({ ok: true, model, chat: content, streamed: text, chunks }));
} catch (e) {
  fail(String(e?.stack || e));
}
