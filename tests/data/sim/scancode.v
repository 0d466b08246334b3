// Arrow-key decoder: one output per 16-bit scancode (random inputs almost never hit a code).
module TopModule (
  input      [15:0] scancode,
  output reg        left,
  output reg        down,
  output reg        right,
  output reg        up
);
  always @(*) begin
    {up, left, down, right} = 4'b0;
    case (scancode)
      16'he06b: left  = 1'b1;
      16'he072: down  = 1'b1;
      16'he074: right = 1'b1;
      16'he075: up    = 1'b1;
      default: ;
    endcase
  end
endmodule
