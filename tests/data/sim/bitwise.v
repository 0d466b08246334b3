// Bitwise AND and XOR of two 4-bit buses (combinational).
module TopModule (
  input  [3:0] a,
  input  [3:0] b,
  output [3:0] y_and,
  output [3:0] y_xor
);
  assign y_and = a & b;
  assign y_xor = a ^ b;
endmodule
