// The recorder: runs on the audio thread, takes the microphone's mono samples 128 frames at a time and
// posts them to the page in blocks of about 100 ms at 16 kHz (Float32Array, ownership transferred).
//
// The page asks for an AudioContext at 16 kHz and the browser resamples the microphone itself, well.
// Where the context cannot run at 16 kHz it runs at the device's rate, and this resamples by linear
// interpolation: no low-pass filter first, so some energy above 8 kHz folds back, but speech has little
// there and the model's mel features stop at 8 kHz anyway; it is a fallback, not the normal path.

const TARGET_RATE = 16000;

class RecorderProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const blockSeconds = options?.processorOptions?.blockSeconds ?? 0.1;
    this.blockSize = Math.round(TARGET_RATE * blockSeconds);
    this.block = new Float32Array(this.blockSize);
    this.filled = 0;
    this.step = sampleRate / TARGET_RATE;  // input samples per output sample; 1 when no resampling
    this.position = 0;  // where the next output sample lies, in the current input block's sample indices
    this.previous = 0;  // the last input sample of the previous block (index -1 of the current one)
    this.port.onmessage = (event) => {
      if (event.data === "flush") {  // the page stops: send what is left, then say so
        if (this.filled > 0) this.post(this.block.slice(0, this.filled));
        this.filled = 0;
        this.port.postMessage("flushed");
      }
    };
  }

  post(samples) {
    this.port.postMessage(samples, [samples.buffer]);
  }

  push(sample) {
    this.block[this.filled++] = sample;
    if (this.filled === this.blockSize) {
      this.post(this.block);  // transferred: the old array is empty from here on
      this.block = new Float32Array(this.blockSize);
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0]?.[0];  // mono: the page asks for one channel, and a mono track up-mixes to it
    if (!channel) return true;  // no input connected yet, or the track ended: keep the node alive
    if (this.step === 1) {
      for (let i = 0; i < channel.length; i++) this.push(channel[i]);
      return true;
    }
    const n = channel.length;
    while (this.position < n - 1) {
      const i = Math.floor(this.position);
      const a = i < 0 ? this.previous : channel[i];
      this.push(a + (this.position - i) * (channel[i + 1] - a));
      this.position += this.step;
    }
    this.position -= n;
    this.previous = channel[n - 1];
    return true;
  }
}

registerProcessor("recorder", RecorderProcessor);
