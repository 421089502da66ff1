// Renders a session's SSE events (live or replayed) as a chat: the user's prompt, text,
// thinking, each tool call folded with its input and result, errors.
import { h, markdown } from './ui.js';

export class Transcript {
  constructor(prompts) {
    this.el = h('div', { class: 'transcript', role: 'log', 'aria-label': 'Conversation' });
    this.prompts = prompts; // turn index -> prompt text, when known
    this.turns = 0;
    this.seen = new Set();
    this.lastSeq = 0;
    this.turn = null;
    this.running = false;
  }

  // Returns false for an event already shown (a replay overlapping the live stream).
  add({ id, event, data }) {
    if (id !== null && id !== undefined) {
      if (this.seen.has(id)) return false;
      this.seen.add(id);
      this.lastSeq = Math.max(this.lastSeq, id);
    }
    const handler = this[`on_${event}`];
    if (handler) handler.call(this, data || {});
    this.el.scrollTop = this.el.scrollHeight;
    return true;
  }

  on_session_start() {
    const prompt = this.prompts(this.turns);
    this.turns += 1;
    this.running = true;
    const answer = h('div', { class: 'answer', 'aria-label': 'Answer' });
    const turn = h('article', { class: 'turn running' },
      prompt ? h('div', { class: 'prompt' }, h('span', { class: 'who' }, 'You'), prompt) : null,
      answer);
    this.el.append(turn);
    this.turn = { el: turn, answer, text: null, thinking: null, tools: {}, streamed: false };
  }

  current() {
    if (!this.turn) this.on_session_start();
    return this.turn;
  }

  on_text_delta({ delta }) {
    const t = this.current();
    if (!t.text) {
      t.text = { raw: '', el: h('div', { class: 'text' }) };
      t.answer.append(t.text.el);
      t.thinking = null;
    }
    t.text.raw += delta;
    t.text.el.replaceChildren(markdown(t.text.raw));
    t.streamed = true;
  }

  on_thinking_delta({ delta }) {
    const t = this.current();
    if (!t.thinking) {
      const pre = h('pre', { class: 'thinking-text' });
      t.thinking = { pre, el: h('details', { class: 'thinking' }, h('summary', {}, 'Thinking'), pre) };
      t.answer.append(t.thinking.el);
      t.text = null;
    }
    t.thinking.pre.textContent += delta;
    t.streamed = true;
  }

  // Whole SDK messages: only needed when the turn ran without partial messages.
  on_message(msg) {
    const t = this.current();
    if (msg.type === 'assistant' && !t.streamed) {
      for (const block of msg.message?.content || []) {
        if (block.type === 'text') this.on_text_delta({ delta: block.text });
        else if (block.type === 'thinking') this.on_thinking_delta({ delta: block.thinking });
      }
    } else if (msg.type === 'result' && msg.subtype && msg.subtype !== 'success') {
      t.answer.append(h('p', { class: 'note' }, `Turn ended: ${msg.subtype.replaceAll('_', ' ')}`));
    }
    if (msg.type === 'assistant') Object.assign(t, { text: null, thinking: null, streamed: false });
  }

  on_tool_use({ id, name, input }) {
    const t = this.current();
    const status = h('span', { class: 'tool-status' }, 'running…');
    const result = h('div', { class: 'tool-result' });
    const el = h('details', { class: 'tool running', dataset: { toolId: id || '' } },
      h('summary', {}, h('span', { class: 'tool-name' }, name), ' ', status),
      h('div', { class: 'tool-label' }, 'Input'),
      h('pre', { class: 'tool-input' }, JSON.stringify(input, null, 2)),
      result);
    t.answer.append(el);
    t.tools[id] = { el, status, result };
    t.text = null;
    t.thinking = null;
  }

  on_tool_result({ tool_use_id: id, content, is_error: isError }) {
    const tool = this.current().tools[id];
    if (!tool) return;
    tool.el.classList.remove('running');
    tool.el.classList.add(isError ? 'failed' : 'ok');
    tool.status.textContent = isError ? 'error' : 'done';
    const text = typeof content === 'string' ? content
      : (content || []).map((b) => (b.type === 'text' ? b.text : `[${b.type}]`)).join('\n');
    tool.result.replaceChildren(
      h('div', { class: 'tool-label' }, isError ? 'Error' : 'Result'),
      h('pre', { class: 'tool-output' }, text));
  }

  on_turn_complete({ result }) {
    const t = this.current();
    if (!t.answer.querySelector('.text') && result) this.on_text_delta({ delta: result });
  }

  on_error({ error, message }) {
    this.current().answer.append(
      h('p', { class: 'error', role: 'alert' }, `Error: ${error || message || 'unknown'}`));
  }

  on_done() {
    if (this.turn) this.turn.el.classList.remove('running');
    this.turn = null;
    this.running = false;
  }
}
